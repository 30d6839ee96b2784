//! The provenance stage: an in-toto statement of how the image was built,
//! attached to it as an OCI 1.1 artifact like the SBOM (and so pushed and
//! signed with it). It comes after the SBOM, which it names as a byproduct.

use anyhow::Context;
use kiln_providers::{GeneratedPlan, Phase};

use super::base_image::BaseImage;
use super::BuildOptions;
use crate::image::{Attachment, Image};
use crate::provenance::{self, ProvenanceInputs, IN_TOTO_MEDIA_TYPE};
use crate::report::{human_size, Progress};
use crate::resolve::LOCK_FILE;

/// Attaches the provenance of `image`, built from `generated` by the
/// phases `ordered` on `base_image` (if any) with `options`.
pub fn attach_provenance(
    image: &mut Image,
    generated: &GeneratedPlan,
    ordered: &[&Phase],
    base_image: Option<&BaseImage>,
    options: &BuildOptions,
    progress: &Progress,
) -> anyhow::Result<()> {
    let app_dir = &generated.app_dir;
    let lock_path = app_dir.join(LOCK_FILE);
    let lock = match std::fs::read(&lock_path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| {
                format!("could not read {} for the provenance", lock_path.display())
            })
        }
    };
    let substituters = if options.sources.substituters.is_empty() {
        vec![kiln_store::DEFAULT_SUBSTITUTER.to_string()]
    } else {
        options
            .sources
            .substituters
            .iter()
            .map(|url| kiln_store::redact_url(url))
            .collect()
    };
    let document = provenance::statement_json(&ProvenanceInputs {
        name: &options.name,
        image_digest: &image.manifest_digest,
        app_dir,
        git_commit: provenance::git_commit(app_dir),
        plan_json: &generated.plan.to_json(),
        lock: lock.as_deref(),
        phases: ordered
            .iter()
            .map(|phase| {
                (
                    phase.name().to_string(),
                    phase.cmds.clone().unwrap_or_default(),
                )
            })
            .collect(),
        base_images: base_image
            .map(|base| (base.reference.clone(), base.digest.clone()))
            .into_iter()
            .collect(),
        substituters,
        byproducts: image
            .attachments
            .iter()
            .map(|a| (a.artifact_type.clone(), a.manifest_digest.clone()))
            .collect(),
    })?;
    let size = document.len() as u64;
    image
        .attachments
        .push(Attachment::new(image, IN_TOTO_MEDIA_TYPE, document)?);
    progress.stage(
        "provenance",
        format!("SLSA provenance v1, {}", human_size(size)),
    );
    Ok(())
}
