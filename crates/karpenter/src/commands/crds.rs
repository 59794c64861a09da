//! `karpenter crds`: writes the generated CRDs to a directory.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Options of `karpenter crds`.
#[derive(Debug, clap::Args)]
pub struct CrdsArgs {
    /// Directory to write the CRD YAML files into (created if missing).
    #[arg(long, default_value = "crds")]
    pub out_dir: PathBuf,
}

/// Renders every CRD and writes it under `args.out_dir`, printing each path written.
pub fn run(args: &CrdsArgs) -> anyhow::Result<()> {
    for path in write_all(&args.out_dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Writes all CRDs into `dir`; returns the paths written.
pub fn write_all(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rendered = karpenter_apis::crd::render_all().context("rendering CRDs")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::with_capacity(rendered.len());
    for (file, yaml) in rendered {
        let path = dir.join(file);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_three_crds_matching_the_committed_ones() {
        let dir = std::env::temp_dir().join(format!("karpenter-crds-test-{}", std::process::id()));
        let written = write_all(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "karpenter.sh_nodepools.yaml",
                "karpenter.sh_nodeclaims.yaml",
                "karpenter.k8s.aws_ec2nodeclasses.yaml"
            ]
        );
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
        for path in &written {
            let fresh = std::fs::read_to_string(path).unwrap();
            let file = path.file_name().unwrap();
            let old = std::fs::read_to_string(committed.join(file)).unwrap();
            assert_eq!(fresh, old, "{}", file.to_string_lossy());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
