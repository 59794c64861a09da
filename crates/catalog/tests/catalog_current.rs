//! The committed catalog data must be exactly what `hack/gen-catalog.py` generates from the
//! pinned moto package and the committed price list.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn committed_catalog_matches_generator() {
    // Canonical, because Python locates its virtualenv from the lexical interpreter path.
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root exists");
    let python = repo_root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run hack/install-test-tools.sh to create the virtualenv with moto",
        python.display()
    );
    let output = Command::new(&python)
        .arg(repo_root.join("hack/gen-catalog.py"))
        .arg("--check")
        .current_dir(&repo_root)
        .output()
        .expect("runs hack/gen-catalog.py");
    assert!(
        output.status.success(),
        "crates/catalog/data is stale or the generator failed (status {}); regenerate with \
         `.venv/bin/python hack/gen-catalog.py` (after hack/install-test-tools.sh).\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
