//! Installs the web shell's browser assets (xterm.js and its fit add-on, pinned in
//! `webshell/package-lock.json`) with npm into `OUT_DIR` and leaves them there for
//! `include_str!`. The assets are never committed and never fetched by a browser from a CDN.
//!
//! Offline builds: set `BHATTI_WEBSHELL_NODE_MODULES` to a `node_modules` directory that
//! already holds the pinned packages.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Files copied out of `node_modules` (source, name in `OUT_DIR`).
const ASSETS: &[(&str, &str)] = &[
    ("@xterm/xterm/lib/xterm.js", "xterm.js"),
    ("@xterm/xterm/css/xterm.css", "xterm.css"),
    ("@xterm/addon-fit/lib/addon-fit.js", "addon-fit.js"),
];

fn main() {
    println!("cargo:rerun-if-changed=webshell/package.json");
    println!("cargo:rerun-if-changed=webshell/package-lock.json");
    println!("cargo:rerun-if-env-changed=BHATTI_WEBSHELL_NODE_MODULES");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let modules = match std::env::var_os("BHATTI_WEBSHELL_NODE_MODULES") {
        Some(dir) => PathBuf::from(dir),
        None => npm_install(&out),
    };
    for (src, name) in ASSETS {
        let path = modules.join(src);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            fail(&format!(
                "{} is missing ({e}); the npm install of crates/server/webshell did not produce it",
                path.display()
            ))
        });
        std::fs::write(out.join(name), strip_source_map(&text)).expect("write asset");
    }
}

/// `npm ci` of the pinned lock file into `OUT_DIR/webshell`, skipped while the lock file is
/// unchanged since the last install.
fn npm_install(out: &Path) -> PathBuf {
    let dir = out.join("webshell");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/webshell");
    let lock =
        std::fs::read("webshell/package-lock.json").expect("read webshell/package-lock.json");
    let stamp = dir.join(".installed-lock");
    if std::fs::read(&stamp).ok().as_deref() == Some(lock.as_slice())
        && dir.join("node_modules").is_dir()
    {
        return dir.join("node_modules");
    }
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(Path::new("webshell").join(f), dir.join(f)).expect("copy npm manifest");
    }
    let status = Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`npm ci` for the web shell's assets (xterm.js) failed ({s}); it needs the npm \
             registry, or set BHATTI_WEBSHELL_NODE_MODULES to a node_modules directory holding \
             the packages pinned in crates/server/webshell/package-lock.json"
        )),
        Err(e) => fail(&format!(
            "`npm` is needed to build bhatti: the web shell embeds xterm.js, installed from npm at \
             build time ({e}). Install Node.js and npm (Debian: `apt-get install npm`), or set \
             BHATTI_WEBSHELL_NODE_MODULES to a node_modules directory holding the packages pinned \
             in crates/server/webshell/package-lock.json"
        )),
    }
    std::fs::write(&stamp, &lock).expect("write install stamp");
    dir.join("node_modules")
}

/// Drops `//# sourceMappingURL=…` so browsers don't ask the server for maps it doesn't serve.
fn strip_source_map(js: &str) -> String {
    js.lines()
        .filter(|l| !l.trim_start().starts_with("//# sourceMappingURL="))
        .collect::<Vec<_>>()
        .join("\n")
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}
