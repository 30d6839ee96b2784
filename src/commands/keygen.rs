//! `kiln keygen`: a key pair for `--sign-key`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::report::outln;

/// `kiln keygen`.
#[derive(Debug, Args)]
pub struct KeygenCommand {
    /// Write the private key to `PREFIX.key` (mode 0600, cosign's encrypted
    /// format: scrypt and NaCl secretbox, password from KILN_SIGN_PASSWORD,
    /// empty when unset) and the public key to `PREFIX.pub` (PEM), as cosign
    /// names them. Existing files are never overwritten.
    #[arg(long, default_value = "cosign", value_name = "PREFIX")]
    pub output_key_prefix: PathBuf,
}

/// Makes an ECDSA P-256 key pair and writes it.
pub fn run(command: &KeygenCommand) -> anyhow::Result<()> {
    let prefix = command.output_key_prefix.display().to_string();
    let private_path = PathBuf::from(format!("{prefix}.key"));
    let public_path = PathBuf::from(format!("{prefix}.pub"));
    let (private, public) = crate::sign::generate(&crate::sign::password());
    write_new(&private_path, &private, 0o600)?;
    write_new(&public_path, &public, 0o644)?;
    outln!(
        "Private key written to {}; public key written to {}",
        private_path.display(),
        public_path.display()
    );
    Ok(())
}

/// Creates `path` holding `text` with `mode`; an existing file is an error,
/// so a key is never lost.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| {
            format!(
                "could not create {} (kiln keygen never overwrites a key; move it away first)",
                path.display()
            )
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))
}
