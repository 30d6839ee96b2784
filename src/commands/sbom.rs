//! `kiln sbom`: prints the SBOM kiln attached to an image (SPDX or
//! CycloneDX, whichever it has), from an OCI layout, an OCI archive or a
//! registry.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::Context;
use clap::Args;

use super::args::RegistryArgs;
use crate::image::Destination;
use crate::registry::{self, RegistryConfig};
use crate::report::outln;
use crate::sbom::SbomFormat;

/// `kiln sbom`.
#[derive(Debug, Args)]
pub struct SbomCommand {
    /// The image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, or a registry
    /// reference (`docker://REGISTRY/NAME[:TAG|@DIGEST]`, `docker://`
    /// optional).
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Print the SBOM in this format only: `spdx` or `cyclonedx`. By
    /// default the newest SBOM the image has, in whichever format.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<SbomFormat>,

    /// Registry host allowed over plain HTTP or unverified TLS. Repeat for more.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Finds the image's SBOM and prints it as it is stored.
pub fn run(command: &SbomCommand) -> anyhow::Result<()> {
    let config = command.registry.config(&command.insecure_registry);
    let types: Vec<&str> = match command.format {
        Some(format) => vec![format.media_type()],
        None => SbomFormat::ALL.iter().map(|f| f.media_type()).collect(),
    };
    let document = sbom_of(&command.image, &types, &config)
        .with_context(|| format!("could not read the SBOM of {}", command.image))?;
    let text = String::from_utf8(document).context("the SBOM is not UTF-8 text")?;
    outln!("{text}");
    Ok(())
}

/// The newest document of one of `types` attached to `image`.
fn sbom_of(image: &str, types: &[&str], config: &RegistryConfig) -> anyhow::Result<Vec<u8>> {
    let local = image.starts_with("oci:") || image.starts_with("oci-archive:");
    if !local {
        return Ok(registry::fetch_referrer(config, image, types)?);
    }
    match image.parse::<Destination>()? {
        Destination::OciLayout { dir, tag } => {
            Ok(registry::layout_referrer(&dir, tag.as_deref(), types)?)
        }
        Destination::OciArchive { file, tag } => {
            let read = |name: &str, limit: u64| archive_entry(&file, name, limit);
            registry::referrer_in(&read, tag.as_deref(), types)
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", file.display()))
        }
        Destination::DockerArchive { .. } => unreachable!("only oci: and oci-archive: are local"),
    }
}

/// The entry `name` of the tar `file`, at most `limit` bytes. One pass
/// over the archive per entry: `kiln sbom` reads three.
fn archive_entry(file: &Path, name: &str, limit: u64) -> Result<Vec<u8>, String> {
    let open = File::open(file).map_err(|e| format!("cannot open it ({e})"))?;
    let mut archive = tar::Archive::new(open);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| format!("is not a tar archive ({e})"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("is not a readable tar archive ({e})"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path != Path::new(name) {
            continue;
        }
        let size = entry.size();
        if size > limit {
            return Err(format!(
                "{name} is {size} bytes, more than the {limit} kiln reads"
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{name}: {e}"))?;
        return Ok(bytes);
    }
    Err(format!("has no {name}"))
}
