//! The committed `crds/*.yaml` must equal what `crd::render_all` generates.
//!
//! Run with `KARPENTER_UPDATE_CRDS=1` to rewrite the files instead of comparing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::PathBuf;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn committed_crds_match_generated() {
    let update = std::env::var_os("KARPENTER_UPDATE_CRDS").is_some_and(|v| v == "1");
    let dir = crds_dir();
    let rendered = karpenter_apis::crd::render_all().expect("CRDs render");
    assert_eq!(rendered.len(), 3);
    let mut stale = Vec::new();
    for (file, yaml) in rendered {
        let path = dir.join(file);
        if update {
            std::fs::create_dir_all(&dir).expect("create crds/");
            std::fs::write(&path, &yaml).expect("write CRD");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != yaml {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated CRDs differ from the committed files: {}\n\
         regenerate them with `KARPENTER_UPDATE_CRDS=1 cargo test -p karpenter-apis --test crd_drift` \
         (or `karpenter crds`) and commit the result",
        stale.join(", ")
    );
}
