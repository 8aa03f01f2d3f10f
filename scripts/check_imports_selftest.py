#!/usr/bin/env python3
"""Self-test of scripts/check-imports.py: builds tiny fake workspaces in a temporary folder,
runs the script on them and checks what it reports and what it must not.

Run: python3 scripts/check_imports_selftest.py [--script PATH]   (exit 0: every check passed)
"""

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "check-imports.py"

# Crates whose findings must be reported. {crate dir: {file: source}}
BAD = {
    # a <-> b, siblings under the crate root.
    "crates/two": {
        "src/lib.rs": "pub mod a;\npub mod b;\n",
        "src/a.rs": "use crate::b::B;\npub struct A;\n",
        "src/b.rs": "pub struct B;\npub fn f() -> crate::a::A { crate::a::A }\n",
    },
    # x -> y -> z -> x under `m` (not the root), written with super:: and self::.
    "crates/three": {
        "src/lib.rs": "pub mod m;\n",
        "src/m.rs": "pub mod x;\npub mod y;\npub mod z;\npub use self::x::X;\n",
        "src/m/x.rs": "use super::y::Y;\npub struct X;\n",
        "src/m/y.rs": "pub struct Y(pub super::z::Z);\n",
        "src/m/z.rs": "use crate::m::{self, x};\npub struct Z;\n",
    },
    # Grouped imports, one of them over several lines: each branch is an edge.
    "crates/grouped": {
        "src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n",
        "src/a.rs": "use crate::{b, c::deep};\npub fn a() {}\n",
        "src/b.rs": "pub fn b() { crate::a::a() }\n",
        "src/c.rs": "pub mod deep;\npub fn c() {}\n",
        "src/c/deep.rs": "use crate::{\n    d::D,\n    a,\n};\n",
        "src/d.rs": "pub struct D;\n",
    },
    # super::super:: from crate::p::o is the crate root: o (so p) uses q.
    "crates/supersuper": {
        "src/lib.rs": "pub mod p;\npub mod q;\n",
        "src/p.rs": "pub mod o;\n",
        "src/p/o.rs": "pub fn o() { super::super::q::q() }\npub struct O;\n",
        "src/q.rs": "pub fn q() {}\npub fn r(_: crate::p::o::O) {}\n",
    },
    # `crate::Thing` re-exported by lib.rs from b: still an a -> b edge.
    "crates/reexport": {
        "src/lib.rs": "pub mod a;\npub mod b;\npub use b::Thing;\n",
        "src/a.rs": "pub struct A;\npub fn f(_: crate::Thing) {}\n",
        "src/b.rs": "pub struct Thing(pub crate::a::A);\n",
    },
    # The layering rule of LAYERING: crate::proxy only from main.rs, control.rs, admin.rs.
    "gateway": {
        "src/lib.rs": "pub mod admin;\npub mod body;\npub mod cluster;\npub mod control;\n"
        "pub mod metrics;\npub mod proxy;\npub mod snapshot;\n",
        "src/body.rs": "pub struct Body;\n",
        "src/main.rs": "use gateway::proxy::Proxy;\nfn main() {}\n",
        "src/admin.rs": "use crate::proxy::Proxy;\n",
        "src/control.rs": "use crate::{proxy, snapshot};\n",
        "src/proxy.rs": "pub mod upstream;\npub struct Proxy;\npub use crate::body::Body;\n",
        "src/proxy/upstream.rs": "use crate::proxy::Proxy;\nuse super::Proxy as P;\n"
        "pub fn f() {}\n",
        # Violations: a full path in code (line 3), an item proxy re-exports (line 5).
        "src/snapshot.rs": textwrap.dedent("""\
            pub struct Snapshot;
            pub fn go() {
                crate::proxy::upstream::f();
            }
            use crate::proxy::Body;
            """),
        # Violation: a grouped import (line 1); no finding for the comments and strings.
        "src/cluster.rs": textwrap.dedent("""\
            use crate::{proxy::upstream, snapshot::Snapshot};
            // crate::proxy::upstream::f() in a line comment
            /// [`crate::proxy`] in a doc comment
            /* crate::proxy in a block comment /* nested crate::proxy */ still comment */
            pub const A: &str = "crate::proxy::upstream";
            pub const B: &str = r#"a "quoted" crate::proxy"#;
            pub const C: char = '"'; pub const D: &str = "crate::proxy::x";
            pub fn lifetime<'a>(s: &'a str) -> &'a str { s }
            """),
        # Violation: `use crate::{proxy, x}` (line 1) and super::proxy (line 3).
        "src/metrics.rs": "use crate::{proxy, snapshot};\npub fn m() {\n"
        "    let _ = super::proxy::Proxy;\n}\n",
    },
}

# Crates with nothing to report. {crate dir: {file: source}}
GOOD = {
    # A child using its parent (and the parent its children) is no sibling edge.
    "crates/childparent": {
        "src/lib.rs": "pub mod p;\npub use p::Thing;\n",
        "src/p.rs": "pub mod c;\npub mod d;\npub struct Thing;\npub fn f() { c::g(); d::h(); }\n",
        "src/p/c.rs": "use super::Thing;\nuse crate::p::f;\npub fn g() {}\n",
        "src/p/d.rs": "pub fn h() { let _ = crate::Thing; super::f() }\n",
    },
    # a -> b for real; b -> a only in test code (inline test module, a test module in its own
    # file, a #[cfg(test)] import and helper).
    "crates/testonly": {
        "src/lib.rs": "pub mod a;\npub mod b;\n",
        "src/a.rs": "use crate::b::B;\npub struct A;\n",
        "src/b.rs": textwrap.dedent("""\
            pub struct B;
            #[cfg(test)]
            use crate::a::A;
            #[cfg(test)]
            fn helper() -> crate::a::A { crate::a::A }
            #[cfg(test)]
            mod tests {
                use super::*;
                use crate::a::A;
                #[test]
                fn t() { let _ = crate::a::A; }
            }
            #[cfg(test)]
            #[path = "b_tests.rs"]
            mod other_tests;
            #[cfg(test)]
            mod file_tests;
            pub fn after_tests() {}
            """),
        "src/b/file_tests.rs": "use crate::a::A;\n",
        "src/b_tests.rs": "use crate::a::A;\n",
        # Integration tests are another crate: never read.
        "tests/it.rs": "use crate::a::A;\nuse crate::b::B;\n",
    },
    # mod.rs layout, inline modules; the binary reaching the library by name.
    "crates/layout": {
        "src/lib.rs": "pub mod outer;\nmod inline {\n    pub fn f() { super::outer::g() }\n}\n",
        "src/outer/mod.rs": "pub mod inner;\npub fn g() {}\n",
        "src/outer/inner.rs": "use super::g;\n",
        "src/main.rs": "use layout::outer::g;\nfn main() { layout::outer::inner::x(); g() }\n",
    },
    # crate::proxy only from the allowed files and proxy's own; elsewhere only in comments,
    # strings, or as another crate's path.
    "gateway": {
        "src/lib.rs": "pub mod admin;\npub mod control;\npub mod proxy;\npub mod snapshot;\n",
        "src/main.rs": "use gateway::proxy::Proxy;\nfn main() {}\n",
        "src/admin.rs": "pub fn f() { crate::proxy::upstream::f() }\n",
        "src/control.rs": "use crate::{proxy, snapshot};\n",
        "src/proxy.rs": "pub mod upstream;\npub struct Proxy;\n",
        "src/proxy/upstream.rs": "use crate::proxy::Proxy;\nuse super::Proxy as P;\npub fn f() {}\n",
        "src/snapshot.rs": textwrap.dedent("""\
            //! Snapshot: must not use `crate::proxy`.
            // crate::proxy::upstream::f();
            /* use crate::proxy; */
            pub const NOTE: &str = "see crate::proxy::upstream";
            pub const RAW: &str = r##"crate::proxy "# crate::proxy"##;
            pub const Q: u8 = b'"'; pub const S: &[u8] = b"crate::proxy";
            pub fn f() -> &'static str { other::proxy::X }
            mod other { pub mod proxy { pub const X: &str = ""; } }
            """),
    },
}


def write(root: Path, crates: dict) -> None:
    members = ", ".join(f'"{d}"' for d in crates)
    (root / "Cargo.toml").write_text(f"[workspace]\nmembers = [{members}]\n")
    for d, files in crates.items():
        name = d.rsplit("/", 1)[-1]
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "Cargo.toml").write_text(f'[package]\nname = "{name}"\n')
        for f, src in files.items():
            p = root / d / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(src)


def run(script: Path, crates: dict, *args: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), crates)
        p = subprocess.run([sys.executable, str(script), "--root", tmp, *args],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", type=Path, default=SCRIPT)
    script = ap.parse_args().script
    failures: list[str] = []

    def expect(cond: bool, what: str, output: str = "") -> None:
        print(("ok    " if cond else "FAIL  ") + what)
        if not cond:
            failures.append(what)
            if output:
                print(textwrap.indent(output, "      | "))

    rc, out = run(script, BAD)
    expect(rc == 1, f"findings exit 1 (got {rc})", out)
    cycles = [
        ("2-cycle a <-> b", "import cycle in two among the children of crate: a, b",
         ["a -> b: crates/two/src/a.rs:1: use crate::b::B;",
          "b -> a: crates/two/src/b.rs:2: pub fn f() -> crate::a::A { crate::a::A }"]),
        ("3-cycle x -> y -> z -> x under m (super::, grouped self)",
         "import cycle in three among the children of crate::m: x, y, z",
         ["x -> y: crates/three/src/m/x.rs:1: use super::y::Y;",
          "y -> z: crates/three/src/m/y.rs:1: pub struct Y(pub super::z::Z);",
          "z -> x: crates/three/src/m/z.rs:1: use crate::m::{self, x};"]),
        ("grouped `use crate::{b, c::deep}` and a multi-line group",
         "import cycle in grouped among the children of crate: a, b, c",
         ["a -> b: crates/grouped/src/a.rs:1: use crate::{b, c::deep};",
          "a -> c: crates/grouped/src/a.rs:1: use crate::{b, c::deep};",
          "c -> a: crates/grouped/src/c/deep.rs:3: use crate::{ … a,"]),
        ("super::super:: resolves two levels up",
         "import cycle in supersuper among the children of crate: p, q",
         ["p -> q: crates/supersuper/src/p/o.rs:1: pub fn o() { super::super::q::q() }",
          "q -> p: crates/supersuper/src/q.rs:2:"]),
        ("a re-export (`crate::Thing` from lib.rs's `pub use b::Thing`) is followed",
         "import cycle in reexport among the children of crate: a, b",
         ["a -> b: crates/reexport/src/a.rs:2: pub fn f(_: crate::Thing) {}",
          "b -> a: crates/reexport/src/b.rs:1:"]),
    ]
    for what, head, lines in cycles:
        expect(head in out and all(line in out for line in lines), what)
    expect("c -> d" not in out and "d -> " not in out,
           "d (imported by c, imports nothing) is not in the cycle")
    expect("gateway: 9 modules, no import cycle" in out, "gateway fixture: modules counted, no cycle")
    expect("two: 3 modules, 1 import cycle" in out, "per-crate summary line names the cycle")

    layering = out[out.find("error: layering"):] if "error: layering" in out else ""
    expect(bool(layering), "layering violation reported")
    for loc, what in [
        ("gateway/src/snapshot.rs:3: crate::proxy::upstream::f();", "full path in code"),
        ("gateway/src/cluster.rs:1: use crate::{proxy::upstream, snapshot::Snapshot};",
         "grouped `use crate::{proxy::y}`"),
        ("gateway/src/metrics.rs:1: use crate::{proxy, snapshot};", "grouped `use crate::{proxy, x}`"),
        ("gateway/src/metrics.rs:3: let _ = super::proxy::Proxy;", "super::proxy from a sibling"),
        ("gateway/src/snapshot.rs:5: use crate::proxy::Body;", "a name proxy only re-exports"),
    ]:
        expect(loc in layering, f"layering: {what} in a disallowed file")
    for f in ("main.rs", "admin.rs", "control.rs", "proxy.rs", "proxy/upstream.rs"):
        expect(f"gateway/src/{f}:" not in layering, f"layering: gateway/src/{f} may use crate::proxy")
    for n in range(2, 9):
        expect(f"gateway/src/cluster.rs:{n}:" not in layering,
               f"layering: cluster.rs line {n} (comment, string, char, lifetime) is no use")

    rc, out = run(script, GOOD)
    expect(rc == 0, f"clean workspace exits 0 (got {rc})", out)
    for line in ["childparent: 4 modules, no import cycle",
                 "testonly: 3 modules, no import cycle",
                 "layout: 4 modules, no import cycle",
                 "layout (bin): 1 module, no import cycle",
                 "gateway: crate::proxy used only from gateway/src/main.rs, gateway/src/control.rs,"
                 " gateway/src/admin.rs"]:
        expect(line in out, f"clean workspace prints {line!r}")
    expect("warning" not in out, "clean workspace: no warning", out)

    # A rule given on the command line: only lib.rs may use crate::p of childparent.
    rc, out = run(script, GOOD, "--no-default-rules", "--rule", "crates/childparent:p=src/p.rs")
    expect(rc == 1 and "crates/childparent/src/lib.rs:2: pub use p::Thing;" in out
           and "crates/childparent/src/p/c.rs" not in out and "gateway/" not in out,
           "--rule: a use outside the allowed files and the module's own is reported")

    print()
    if failures:
        print(f"check_imports_selftest: {len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("check_imports_selftest: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
