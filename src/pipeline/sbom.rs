//! The SBOM stage: the image's SPDX or CycloneDX document, made from the
//! closure it packed and the app's lockfiles, attached to it as an OCI 1.1
//! artifact.

use std::path::Path;

use kiln_store::ClosurePath;

use crate::image::{Attachment, Image};
use crate::report::{human_size, Progress};
use crate::sbom::{self, SbomFormat, SbomInputs};

/// Attaches the SBOM of `image` (named `name`), in `format`: its store
/// paths `store_paths` and the dependencies of the app in `app_dir`, if any.
pub fn attach_sbom(
    image: &mut Image,
    format: SbomFormat,
    name: &str,
    store_paths: &[ClosurePath],
    app_dir: Option<&Path>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let app = app_dir.map(sbom::app_packages).unwrap_or_default();
    for unreadable in &app.unreadable {
        tracing::warn!("{unreadable}");
    }
    let app = app.packages;
    let document = format.document(&SbomInputs {
        name,
        image_digest: &image.manifest_digest,
        store_paths,
        app: &app,
        source_date_epoch: image.source_date_epoch,
    })?;
    let size = document.len() as u64;
    image
        .attachments
        .push(Attachment::new(image, format.media_type(), document)?);
    progress.stage(
        "sbom",
        format!(
            "{}: {} store paths, {} app packages, {}",
            format.title(),
            store_paths.len(),
            app.len(),
            human_size(size)
        ),
    );
    Ok(())
}
