//! Settling a plan as upstream does before printing it: providers
//! emptied, build image and nixpkgs archives pinned, unfilled holes dropped.

use super::{
    remove_holes, BuildPlan, Phase, Phases, DEBIAN_BASE_IMAGE, NIXPKGS_ARCHIVE,
    NIXPKGS_ARCHIVE_LEGACY_OPENSSL, UBUNTU_BASE_IMAGE,
};

impl BuildPlan {
    /// Settles the plan as upstream does before printing: providers emptied,
    /// build image and nixpkgs archives pinned, unfilled holes dropped.
    pub(crate) fn pin(&mut self, use_debian: bool) {
        self.providers = Some(Vec::new());
        if self.build_image.is_none() {
            let image = if use_debian {
                DEBIAN_BASE_IMAGE
            } else {
                UBUNTU_BASE_IMAGE
            };
            self.build_image = Some(image.into());
        }
        self.name_phases();
        for phase in self.phases.get_or_insert_with(Phases::new).values_mut() {
            phase.pin(use_debian);
        }
        if let Some(start) = &mut self.start_phase {
            remove_holes(&mut start.only_include_files);
        }
    }
}

impl Phase {
    /// Settles the phase for printing: pins the nixpkgs archive when the
    /// phase uses Nix, and drops holes no lower plan filled.
    fn pin(&mut self, legacy_openssl: bool) {
        if self.uses_nix() && self.nixpkgs_archive.is_none() {
            let archive = if legacy_openssl {
                NIXPKGS_ARCHIVE_LEGACY_OPENSSL
            } else {
                NIXPKGS_ARCHIVE
            };
            self.nixpkgs_archive = Some(archive.into());
        }
        for list in [
            &mut self.cmds,
            &mut self.depends_on,
            &mut self.nix_pkgs,
            &mut self.nix_libs,
            &mut self.apt_pkgs,
            &mut self.nix_overlays,
            &mut self.only_include_files,
            &mut self.cache_directories,
            &mut self.paths,
        ] {
            remove_holes(list);
        }
    }
}
