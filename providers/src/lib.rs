//! `kiln-providers`: turns an application folder into a Nixpacks-compatible
//! build plan.
//!
//! This crate owns the `App` view of the source folder, the `Environment` of
//! `NIXPACKS_*` variables and `--env` values, the `BuildPlan` with its phases,
//! plan merging (provider < config file < environment < CLI flags), and one
//! module per language provider. It is pure: it reads the app folder and does
//! no other I/O, starts no processes and touches no network.
