use super::*;

/// Lays out a folder the way kubelet mounts a ConfigMap.
fn configmap(dir: &Path, version: &str, body: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("istio.yaml"), body).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("istio.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/istio.yaml", &link).unwrap();
    }
}

#[test]
fn fingerprint_follows_a_configmap_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    configmap(dir.path(), "v1", "a: 1\n");
    let paths = vec![dir.path().to_path_buf()];
    let v1 = fingerprint(&paths);
    assert_eq!(v1, fingerprint(&paths), "stable");
    configmap(dir.path(), "v2", "a: 2\n");
    assert_ne!(v1, fingerprint(&paths));
}

#[test]
fn fingerprint_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "x: 1\n").unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let before = fingerprint(&paths);
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    assert_eq!(before, fingerprint(&paths));
    std::fs::write(dir.path().join("b.yml"), "y: 1\n").unwrap();
    assert_ne!(before, fingerprint(&paths));
}

#[tokio::test]
async fn a_symlink_swap_triggers_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    configmap(dir.path(), "v1", "a: 1\n");
    let mut triggers = watch(&[dir.path().to_path_buf()], Duration::from_secs(3600)).unwrap();
    configmap(dir.path(), "v2", "a: 2\n");
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        triggers.next(Duration::from_millis(50)),
    )
    .await
    .expect("a trigger within 5 s");
    assert_eq!(got, Some(Trigger::Files));
}

/// Triggers sent by hand, on a clock the test moves.
fn by_hand() -> (mpsc::Sender<Trigger>, Triggers) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Triggers { rx, _watcher: None })
}

fn text(files: &ConfigFiles) -> Vec<&str> {
    let files = files.files.as_ref().unwrap();
    files.iter().map(|(_, text)| text.as_str()).collect()
}

const SETTLE: Duration = Duration::from_millis(200);

#[tokio::test(start_paused = true)]
async fn a_save_in_progress_is_acted_on_only_once_two_reads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("istio.yaml");
    std::fs::write(&file, "a: 1\n---\nb: 2\n").unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let (tx, triggers) = by_hand();
    let mut changes = Changes::new(triggers, &paths, fingerprint(&paths), SETTLE);

    // A slow save: truncated (and still valid YAML), the rest written 300 ms later, after
    // the burst's settle but before a second read.
    std::fs::write(&file, "a: 1\n").unwrap();
    tx.send(Trigger::Files).await.unwrap();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&file, "a: 1\n---\nb: 3\n").unwrap();
        tx.send(Trigger::Files).await.unwrap();
        tx
    });
    let (trigger, files) = changes.next().await.expect("a change");
    assert_eq!(trigger, Trigger::Files);
    assert_eq!(
        text(&files),
        ["a: 1\n---\nb: 3\n"],
        "never the truncated file"
    );
    let tx = writer.await.unwrap();

    // Nothing changed since: a file event is not a change, SIGHUP is.
    tx.send(Trigger::Files).await.unwrap();
    tx.send(Trigger::Signal).await.unwrap();
    let (trigger, files) = changes.next().await.expect("SIGHUP");
    assert_eq!(trigger, Trigger::Signal);
    assert_eq!(text(&files), ["a: 1\n---\nb: 3\n"]);
}

#[test]
fn a_load_reads_the_texts_read_not_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vs.yaml");
    let yaml = "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\n\
                metadata: {name: a}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n";
    std::fs::write(&file, yaml).unwrap();
    let files = ConfigFiles::read(&[dir.path().to_path_buf()]);
    std::fs::remove_file(&file).unwrap();
    let loaded = files.load(&LoadOptions::default()).unwrap();
    assert_eq!(
        loaded.config.virtual_services.len(),
        1,
        "{:?}",
        loaded.diagnostics
    );
    let missing = ConfigFiles::read(&[file]);
    assert!(missing.load(&LoadOptions::default()).is_err());
}

#[tokio::test]
async fn the_poll_triggers_without_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut triggers = watch(&[dir.path().to_path_buf()], Duration::from_millis(100)).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), triggers.next(Duration::ZERO)).await;
    assert_eq!(got.unwrap(), Some(Trigger::Files));
}
