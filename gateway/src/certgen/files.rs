//! The files: read when present, folders made 0700, every write atomic.

use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::{CertError, DIR_MODE};

/// The file's bytes; `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, CertError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CertError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Creates `path` (and missing parents) with [`DIR_MODE`]; an existing folder is left as it is.
pub(super) fn make_dir(path: &Path) -> Result<(), CertError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|source| CertError::CreateDir {
            path: path.to_owned(),
            source,
        })
}

/// Replaces `path` with `contents` at once: a temporary file in the same folder (0600 from its
/// creation), flushed, given `mode`, then renamed over `path`.
pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let failed = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".gateway-cert-")
        .tempfile_in(dir)
        .map_err(failed)?;
    file.write_all(contents).map_err(failed)?;
    file.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(failed)?;
    file.as_file().sync_all().map_err(failed)?;
    file.persist(path).map_err(|err| failed(err.error))?;
    // The rename reaches the disk with the folder's own entry.
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(failed)
}
