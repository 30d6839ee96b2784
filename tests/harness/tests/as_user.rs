//! The unprivileged test user exists and commands really run as it.

use kiln_harness::process::run;
use kiln_harness::AsUser;

#[test]
fn commands_run_unprivileged_and_own_their_temp_dir() {
    let Some(user) = AsUser::get() else {
        return;
    };
    assert_ne!(user.uid(), 0);
    let id = run(user.command("id").arg("-u"));
    assert_eq!(id.trim(), user.uid().to_string());

    let dir = user.tempdir();
    let file = dir.path().join("written-by-user");
    run(user.command("touch").arg(&file));
    let denied = user
        .command("touch")
        .arg("/root/kiln-not-allowed")
        .status()
        .unwrap();
    assert!(!denied.success(), "the test user could write to /root");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(file).unwrap().uid(), user.uid());
}
