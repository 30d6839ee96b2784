//! The SBOM stage: the image's SPDX document, made from the closure it
//! packed and the app's lockfiles, attached to it as an OCI 1.1 artifact.

use std::path::Path;

use anyhow::Context;
use kiln_store::ClosurePath;

use crate::image::{Attachment, Image};
use crate::report::{human_size, Progress};
use crate::sbom::{self, SbomInputs, SPDX_MEDIA_TYPE};

/// Attaches the SBOM of `image` (named `name`): its store paths
/// `store_paths` and the dependencies of the app in `app_dir`, if any.
pub fn attach_sbom(
    image: &mut Image,
    name: &str,
    store_paths: &[ClosurePath],
    app_dir: Option<&Path>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let app = app_dir
        .map(sbom::app_packages)
        .transpose()
        .context("could not list the app's dependencies for the SBOM")?
        .unwrap_or_default();
    let document = sbom::spdx_json(&SbomInputs {
        name,
        image_digest: &image.manifest_digest,
        store_paths,
        app: &app,
        source_date_epoch: image.source_date_epoch,
    })?;
    let size = document.len() as u64;
    image
        .attachments
        .push(Attachment::new(image, SPDX_MEDIA_TYPE, document)?);
    progress.stage(
        "sbom",
        format!(
            "SPDX 2.3: {} store paths, {} app packages, {}",
            store_paths.len(),
            app.len(),
            human_size(size)
        ),
    );
    Ok(())
}
