//! Plans of our own fixture apps: each equals the plan upstream Nixpacks
//! prints for it (the goldens in `tests/fixtures/plans/`, written by
//! `providers/parity/parity.py --write-goldens`), and the fields the build
//! relies on are asserted by name.

use std::path::{Path, PathBuf};

use kiln_providers::{
    detect_providers, generate_plan, BuildPlan, Environment, GeneratePlanOptions, Phase, PlanFlags,
};
use serde_json::Value;

/// Static assets whose text kiln writes itself, left out of the goldens.
const OWN_ASSETS: &[&str] = &[
    "Caddyfile",
    "nginx.template.conf",
    "php-fpm.conf",
    "get-gleam.sh",
];

fn app(name: &str) -> PathBuf {
    fixtures("apps").join(name)
}

fn options(env: &[&str]) -> GeneratePlanOptions {
    GeneratePlanOptions {
        env: Environment::from_args(env, |_| None),
        ..GeneratePlanOptions::default()
    }
}

fn plan(name: &str, env: &[&str]) -> BuildPlan {
    generate_plan(&app(name), &options(env)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn strings(list: &Option<Vec<String>>) -> Vec<&str> {
    list.iter().flatten().map(String::as_str).collect()
}

/// The Nix packages of phase `phase`.
fn nix_pkgs<'a>(plan: &'a BuildPlan, phase: &str) -> Vec<&'a str> {
    strings(&expect_phase(plan, phase).nix_pkgs)
}

/// The apt packages of phase `phase`.
fn apt_pkgs<'a>(plan: &'a BuildPlan, phase: &str) -> Vec<&'a str> {
    strings(&expect_phase(plan, phase).apt_pkgs)
}

/// The commands of phase `phase`.
fn cmds<'a>(plan: &'a BuildPlan, phase: &str) -> Vec<&'a str> {
    strings(&expect_phase(plan, phase).cmds)
}

/// Phase `phase` of `plan`; a missing one fails the test, naming it.
fn expect_phase<'a>(plan: &'a BuildPlan, phase: &str) -> &'a Phase {
    plan.phase(phase)
        .unwrap_or_else(|| panic!("the plan has no {phase} phase"))
}

/// The start command.
fn start_cmd(plan: &BuildPlan) -> Option<&str> {
    plan.start_phase.as_ref().unwrap().cmd.as_deref()
}

/// The phase names in the order they run.
fn phase_order(plan: &BuildPlan) -> Vec<&str> {
    plan.phases_in_order()
        .unwrap()
        .iter()
        .map(|p| p.name())
        .collect()
}

fn normalized(plan: &BuildPlan) -> Value {
    let mut value: Value = serde_json::from_str(&plan.to_json()).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("buildImage");
    if let Some(Value::Object(assets)) = object.get_mut("staticAssets") {
        assets.retain(|name, _| {
            !OWN_ASSETS.contains(&name.as_str()) && !name.starts_with("scripts/")
        });
    }
    value
}

/// Checks every `plan-*` app in `apps` against its golden `<app>.json` in
/// `goldens` and returns how many were checked. An app without a golden, a
/// golden without an app, or a plan that differs is an error naming it.
fn check_goldens(apps: &Path, goldens: &Path) -> Result<usize, String> {
    let mut names: Vec<String> = std::fs::read_dir(apps)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("plan-"))
        .collect();
    names.sort();
    for entry in std::fs::read_dir(goldens).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_str().unwrap();
            if !names.iter().any(|n| n == name) {
                return Err(format!("{} has no app {name}", path.display()));
            }
        }
    }
    for name in &names {
        let path = goldens.join(format!("{name}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Err(format!(
                "{name} has no golden {}: write it with providers/parity/parity.py --write-goldens",
                path.display()
            ));
        };
        // Upstream's goldens were written on x86_64; musl targets follow the machine.
        let golden: Value =
            serde_json::from_str(&text.replace("x86_64", std::env::consts::ARCH)).unwrap();
        let plan =
            generate_plan(&apps.join(name), &options(&[])).map_err(|e| format!("{name}: {e}"))?;
        let ours = normalized(&plan);
        if ours != golden {
            return Err(format!(
                "{name} differs from upstream's plan\nkiln:     {ours}\nupstream: {golden}"
            ));
        }
    }
    Ok(names.len())
}

/// The folder of every fixture app, and of the goldens.
fn fixtures(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(folder)
}

#[test]
fn every_plan_fixture_matches_upstreams_golden() {
    let checked =
        check_goldens(&fixtures("apps"), &fixtures("plans")).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked >= 30, "only {checked} plan-* apps found");
}

#[test]
fn a_plan_app_without_a_golden_or_with_another_plan_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let (apps, goldens) = (dir.path().join("apps"), dir.path().join("plans"));
    std::fs::create_dir_all(apps.join("plan-fresh")).unwrap();
    std::fs::write(apps.join("plan-fresh/Procfile"), "web: ./serve\n").unwrap();
    std::fs::create_dir(&goldens).unwrap();
    let err = check_goldens(&apps, &goldens).unwrap_err();
    assert!(err.starts_with("plan-fresh has no golden"), "{err}");

    // With a golden that says another start command, the plan no longer
    // matches upstream's and the check names the app.
    let mut golden = normalized(&generate_plan(&apps.join("plan-fresh"), &options(&[])).unwrap());
    std::fs::write(goldens.join("plan-fresh.json"), golden.to_string()).unwrap();
    assert_eq!(check_goldens(&apps, &goldens), Ok(1));
    golden["start"]["cmd"] = "./serve --upstream".into();
    std::fs::write(goldens.join("plan-fresh.json"), golden.to_string()).unwrap();
    let err = check_goldens(&apps, &goldens).unwrap_err();
    assert!(
        err.starts_with("plan-fresh differs from upstream's plan"),
        "{err}"
    );

    std::fs::write(goldens.join("plan-gone.json"), "{}").unwrap();
    let err = check_goldens(&apps, &goldens).unwrap_err();
    assert!(err.ends_with("has no app plan-gone"), "{err}");
}

#[test]
fn node_pnpm_next_uses_nvmrc_corepack_and_next_caches() {
    let plan = plan("plan-node-pnpm-next", &[]);
    let setup = plan.phase("setup").unwrap();
    assert_eq!(
        strings(&setup.nix_pkgs),
        ["nodejs_20", "pnpm-8_x", "openssl"]
    );
    let install = plan.phase("install").unwrap();
    assert_eq!(
        strings(&install.cmds),
        [
            "npm install -g corepack@0.24.1 && corepack enable",
            "pnpm i --frozen-lockfile"
        ]
    );
    let build = plan.phase("build").unwrap();
    assert_eq!(strings(&build.cmds), ["pnpm run build"]);
    assert_eq!(
        strings(&build.cache_directories),
        [".cache/custom", ".next/cache", "node_modules/.cache"]
    );
    assert_eq!(start_cmd(&plan), Some("pnpm run start"));
    assert_eq!(plan.variables.unwrap()["NODE_ENV"], "production");
}

#[test]
fn node_version_env_wins_over_version_files() {
    let plan = plan("plan-node-pnpm-next", &["NIXPACKS_NODE_VERSION=22"]);
    assert_eq!(nix_pkgs(&plan, "setup")[0], "nodejs_22");
}

#[test]
fn vite_spa_is_served_by_caddy_from_its_out_dir() {
    let plan = plan("plan-node-vite-spa", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["nodejs_20", "yarn-1_x"]);
    assert_eq!(nix_pkgs(&plan, "caddy"), ["caddy"]);
    assert_eq!(
        plan.variables.as_ref().unwrap()["NIXPACKS_SPA_OUTPUT_DIR"],
        "build"
    );
    assert!(
        plan.static_assets.as_ref().unwrap()["Caddyfile"].contains("{$NIXPACKS_SPA_OUTPUT_DIR}")
    );
    assert_eq!(
        start_cmd(&plan),
        Some("exec caddy run --config /assets/Caddyfile --adapter caddyfile 2>&1")
    );
    let without_caddy = self::plan("plan-node-vite-spa", &["NIXPACKS_SPA_CADDY=false"]);
    assert!(without_caddy.phase("caddy").is_none());
}

#[test]
fn turbo_builds_with_turbo_and_starts_the_named_workspace() {
    let plan = plan("plan-node-turbo", &[]);
    assert_eq!(cmds(&plan, "build"), ["npx turbo run build"]);
    assert_eq!(nix_pkgs(&plan, "setup")[1], "npm-8_x");
    let named = self::plan("plan-node-turbo", &["NIXPACKS_TURBO_APP_NAME=web"]);
    assert_eq!(start_cmd(&named), Some("npm --workspace web run start"));
}

#[test]
fn django_with_postgres_migrates_and_runs_gunicorn() {
    let plan = plan("plan-python-django", &[]);
    let setup = plan.phase("setup").unwrap();
    assert_eq!(
        strings(&setup.nix_pkgs),
        ["python311", "postgresql_16.dev", "gcc"]
    );
    assert_eq!(strings(&setup.nix_libs), ["zlib", "stdenv.cc.cc.lib"]);
    assert_eq!(
        start_cmd(&plan),
        Some("python manage.py migrate && gunicorn shop.wsgi")
    );
    assert_eq!(
        plan.variables.unwrap()["NIXPACKS_METADATA"],
        "python,django,postgres"
    );
}

#[test]
fn poetry_takes_versions_from_tool_versions() {
    let plan = plan("plan-python-poetry", &[]);
    assert_eq!(nix_pkgs(&plan, "setup")[0], "python312");
    assert!(cmds(&plan, "install")[0].contains("poetry install --no-dev"));
    assert_eq!(start_cmd(&plan), Some("python -m inventory"));
    assert_eq!(plan.variables.unwrap()["NIXPACKS_POETRY_VERSION"], "1.8.2");
}

#[test]
fn go_builds_the_cmd_folder_into_a_slim_image() {
    let plan = plan("plan-go-cmd", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["go_1_21"]);
    assert_eq!(cmds(&plan, "build"), ["go build -o out ./cmd/server"]);
    let start = plan.start_phase.unwrap();
    assert_eq!(
        (start.cmd.as_deref(), start.run_image.as_deref()),
        (Some("./out"), Some("ubuntu:noble"))
    );
    let cgo = self::plan("plan-go-cmd", &["CGO_ENABLED=1"]);
    assert_eq!(cgo.start_phase.unwrap().run_image, None);
}

#[test]
fn rust_musl_by_default_and_glibc_with_no_musl() {
    let musl = plan("plan-rust-bins", &[]);
    let start = musl.start_phase.unwrap();
    assert_eq!(start.cmd.as_deref(), Some("./bin/shipper"));
    assert_eq!(start.run_image.as_deref(), Some("ubuntu:noble"));
    let glibc = plan(
        "plan-rust-bins",
        &["NIXPACKS_NO_MUSL=1", "NIXPACKS_RUST_BIN=worker"],
    );
    assert_eq!(
        nix_pkgs(&glibc, "setup"),
        ["binutils", "gcc", "rust-bin.stable.latest.default"]
    );
    assert_eq!(
        cmds(&glibc, "build"),
        [
            "mkdir -p bin",
            "cargo build --release",
            "cp target/release/shipper bin",
            "cp target/release/worker bin"
        ]
    );
    let start = glibc.start_phase.unwrap();
    assert_eq!(
        (start.cmd.as_deref(), start.run_image),
        (Some("./bin/worker"), None)
    );
}

#[test]
fn rust_bin_that_does_not_exist_is_a_clear_error() {
    let err = generate_plan(
        &app("plan-rust-bins"),
        &options(&["NIXPACKS_RUST_BIN=nope"]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("binaries: shipper, worker"),
        "{err}"
    );
}

#[test]
fn rails_app_precompiles_assets_and_installs_ruby_with_rbenv() {
    let plan = plan("plan-ruby-rails", &[]);
    let setup = plan.phase("setup").unwrap();
    assert!(strings(&setup.apt_pkgs).contains(&"libpq-dev"));
    assert!(
        strings(&setup.cmds)[0].contains("rbenv install 3.2.2")
            && strings(&setup.cmds)[0].ends_with("gem install bundler:2.5.3")
    );
    assert_eq!(cmds(&plan, "build"), ["bundle exec rake assets:precompile"]);
    assert_eq!(
        start_cmd(&plan),
        Some("bundle exec bin/rails server -b 0.0.0.0 -p ${PORT:-3000} -e $RAILS_ENV")
    );
    assert_eq!(plan.variables.unwrap()["RAILS_LOG_TO_STDOUT"], "enabled");
}

#[test]
fn laravel_gets_php_with_extensions_and_public_root() {
    let plan = plan("plan-php-laravel", &[]);
    let setup = plan.phase("setup").unwrap();
    assert_eq!(
        strings(&setup.nix_pkgs)[0],
        "(php.withExtensions (pe: pe.enabled ++ [pe.all.mbstring]))"
    );
    assert_eq!(
        strings(&setup.nix_libs),
        ["phpExtensions.mbstring", "libmysqlclient"]
    );
    let vars = plan.variables.unwrap();
    assert_eq!(vars["NIXPACKS_PHP_ROOT_DIR"], "/app/public");
    assert!(plan.static_assets.unwrap()["nginx.template.conf"].contains("${NIXPACKS_PHP_ROOT_DIR}"));
}

#[test]
fn gradle_wrapper_version_picks_gradle_and_spring_port() {
    let plan = plan("plan-java-gradle", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["jdk17", "gradle_7"]);
    assert_eq!(
        cmds(&plan, "build"),
        ["./gradlew clean build -x check -x test"]
    );
    assert!(plan
        .start_phase
        .unwrap()
        .cmd
        .unwrap()
        .contains("-Dserver.port=$PORT"));
}

#[test]
fn maven_wrapper_and_spring_boot() {
    let plan = plan("plan-java-maven", &["NIXPACKS_JDK_VERSION=21"]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["jdk21", "maven"]);
    assert!(cmds(&plan, "build")[0].starts_with("chmod +x ./mvnw && ./mvnw "));
    assert_eq!(
        start_cmd(&plan),
        Some("java -Dserver.port=$PORT $JAVA_OPTS -jar target/*jar")
    );
}

#[test]
fn deno_start_task_from_jsonc_wins() {
    let plan = plan("plan-deno", &[]);
    assert_eq!(cmds(&plan, "build"), ["deno cache src/index.ts"]);
    assert_eq!(start_cmd(&plan), Some("deno run --allow-net src/index.ts"));
}

#[test]
fn crystal_builds_with_shards_and_starts_its_target() {
    let plan = plan("plan-crystal", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["crystal", "shards"]);
    assert_eq!(cmds(&plan, "install"), ["shards install"]);
    assert_eq!(cmds(&plan, "build"), ["shards build"]);
    assert_eq!(start_cmd(&plan), Some("./bin/kettle"));
}

#[test]
fn csharp_sdk_from_global_json_or_environment() {
    let plan = plan("plan-csharp", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["dotnet-sdk_8"]);
    assert_eq!(cmds(&plan, "install"), ["dotnet restore"]);
    assert_eq!(
        cmds(&plan, "build"),
        ["dotnet publish --no-restore -c Release -o out"]
    );
    assert_eq!(start_cmd(&plan), Some("./out/Ledger"));
    let vars = plan.variables.unwrap();
    assert_eq!(vars["ASPNETCORE_URLS"], "http://0.0.0.0:3000");
    assert_eq!(vars["NIXPACKS_METADATA"], "c#");
    let env_sdk = self::plan("plan-csharp", &["NIXPACKS_CSHARP_SDK_VERSION=6.0"]);
    assert_eq!(nix_pkgs(&env_sdk, "setup"), ["dotnet-sdk"]);
}

#[test]
fn fsharp_publishes_its_project() {
    let plan = plan("plan-fsharp", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["dotnet-sdk"]);
    assert_eq!(start_cmd(&plan), Some("./out/Almanac"));
    assert_eq!(
        plan.variables.unwrap()["DOTNET_ROOT"],
        "/nix/var/nix/profiles/default/"
    );
}

#[test]
fn dart_compiles_the_executable_named_in_pubspec() {
    let plan = plan("plan-dart", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["dart"]);
    let install = expect_phase(&plan, "install");
    assert_eq!(strings(&install.only_include_files), ["pubspec.yaml"]);
    assert_eq!(cmds(&plan, "build"), ["dart compile exe bin/tally.dart"]);
    assert_eq!(start_cmd(&plan), Some("./bin/tally.exe"));
}

#[test]
fn phoenix_with_ecto_deploys_assets_and_sets_up_the_database() {
    let plan = plan("plan-elixir-phoenix", &[]);
    let setup = expect_phase(&plan, "setup");
    assert_eq!(strings(&setup.nix_pkgs), ["elixir_1_15", "gcc"]);
    assert_eq!(strings(&setup.nix_libs), ["stdenv.cc.cc.lib"]);
    assert_eq!(
        setup.nixpkgs_archive.as_deref(),
        Some("c5702bd28cbde41a191a9c2a00501f18941efbd0")
    );
    assert_eq!(
        cmds(&plan, "build"),
        ["mix compile", "mix assets.deploy", "mix ecto.setup"]
    );
    assert_eq!(start_cmd(&plan), Some("mix phx.server"));
    assert_eq!(plan.variables.as_ref().unwrap()["MIX_ENV"], "prod");
    let pinned = self::plan("plan-elixir-phoenix", &["NIXPACKS_ELIXIR_VERSION=1.12"]);
    assert_eq!(nix_pkgs(&pinned, "setup")[0], "elixir_1_12");
}

#[test]
fn clojure_lein_ring_uberjar_on_the_jdk_from_its_version_file() {
    let plan = plan("plan-clojure-lein", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["leiningen", "jdk11"]);
    assert!(cmds(&plan, "build")[0].starts_with("lein ring uberjar; "));
    assert!(start_cmd(&plan)
        .unwrap()
        .contains("java $JAVA_OPTS -jar $JAR_FILE"));
    let latest = self::plan("plan-clojure-lein", &["NIXPACKS_JDK_VERSION=latest"]);
    assert_eq!(nix_pkgs(&latest, "setup")[1], "jdk");
}

#[test]
fn clojure_tools_build_makes_the_uberjar_with_the_clojure_cli() {
    let plan = plan("plan-clojure-tools-build", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["clojure", "jdk8"]);
    assert!(cmds(&plan, "build")[0].starts_with("clojure -T:build uber; "));
    assert_eq!(phase_order(&plan), ["setup", "build"]);
}

#[test]
fn gleam_downloads_the_compiler_of_its_stdlib_and_ships_erlang() {
    let plan = plan("plan-gleam", &[]);
    assert_eq!(
        nix_pkgs(&plan, "setup"),
        ["wget", "erlang", "elixir", "rebar3"]
    );
    assert_eq!(
        cmds(&plan, "install"),
        ["sh /assets/get-gleam.sh 0.36.0", "gleam deps download"]
    );
    let start = plan.start_phase.as_ref().unwrap();
    assert_eq!(
        start.cmd.as_deref(),
        Some("./build/erlang-shipment/entrypoint.sh run")
    );
    assert_eq!(
        strings(&start.only_include_files),
        ["build/erlang-shipment"]
    );
    assert!(plan.static_assets.unwrap()["get-gleam.sh"].contains("tar -xzf"));
}

#[test]
fn haskell_stack_starts_the_first_executable_by_name() {
    let plan = plan("plan-haskell", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["stack"]);
    assert!(apt_pkgs(&plan, "setup").starts_with(&["libgmp-dev", "gcc"]));
    assert_eq!(cmds(&plan, "install"), ["stack setup"]);
    assert_eq!(
        strings(&expect_phase(&plan, "build").cache_directories),
        [".stack-work", "/root/.stack"]
    );
    assert_eq!(start_cmd(&plan), Some("/root/.local/bin/sundial-cli"));
}

#[test]
fn haunt_site_builds_and_starts_with_guile() {
    let plan = plan("plan-scheme", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["haunt", "guile"]);
    assert_eq!(cmds(&plan, "build"), ["haunt build"]);
    assert_eq!(start_cmd(&plan), Some("guile init.scm --auto-compile"));
}

#[test]
fn lunatic_builds_for_wasm_and_runs_under_lunatic() {
    let plan = plan("plan-lunatic", &[]);
    let pkgs = nix_pkgs(&plan, "setup");
    assert_eq!(pkgs.last(), Some(&"lunatic"));
    assert!(pkgs[2].contains("wasm32-wasi"), "{pkgs:?}");
    assert_eq!(
        cmds(&plan, "build")[1],
        "cargo build --release --target wasm32-wasi"
    );
    assert_eq!(start_cmd(&plan), Some("lunatic ./bin/beacon.wasm"));
}

#[test]
fn scala_sbt_stages_and_runs_in_a_jre_image() {
    let plan = plan("plan-scala", &[]);
    assert_eq!(
        nix_pkgs(&plan, "setup"),
        ["(sbt.override { jre = jdk17; })"]
    );
    assert_eq!(cmds(&plan, "build"), ["sbt stage"]);
    let start = plan.start_phase.unwrap();
    assert_eq!(
        start.cmd.as_deref(),
        Some("./target/universal/stage/bin/main")
    );
    assert_eq!(
        start.run_image.as_deref(),
        Some("eclipse-temurin:17.0.9_9-jre-jammy")
    );
    let jdk11 = self::plan("plan-scala", &["NIXPACKS_JDK_VERSION=11"]);
    assert_eq!(
        nix_pkgs(&jdk11, "setup"),
        ["(sbt.override { jre = jdk11; })"]
    );
}

#[test]
fn swift_tools_version_picks_the_archive_and_target() {
    let plan = plan("plan-swift", &[]);
    let setup = expect_phase(&plan, "setup");
    assert_eq!(
        setup.nixpkgs_archive.as_deref(),
        Some("7592790b9e02f7f99ddcb1bd33fd44ff8df6a9a7")
    );
    assert_eq!(
        strings(&expect_phase(&plan, "install").only_include_files),
        ["Package.swift", "Package.resolved"]
    );
    assert_eq!(
        cmds(&plan, "build")[1],
        "cp ./.build/release/Signpost ./Signpost && rm -rf ./.build"
    );
    assert_eq!(start_cmd(&plan), Some("./Signpost"));
}

#[test]
fn zig_fetches_submodules_and_starts_the_binary_named_after_the_folder() {
    let plan = plan("plan-zig", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["zig"]);
    assert_eq!(cmds(&plan, "install"), ["git submodule update --init"]);
    assert_eq!(cmds(&plan, "build"), ["zig build -Doptimize=ReleaseSafe"]);
    assert_eq!(start_cmd(&plan), Some("./zig-out/bin/plan-zig"));
}

#[test]
fn cobol_compiles_index_first_or_the_named_program() {
    let plan = plan("plan-cobol", &[]);
    assert_eq!(nix_pkgs(&plan, "setup"), ["gnu-cobol", "gcc"]);
    assert_eq!(cmds(&plan, "build"), ["cobc -x -o index src/index.cbl"]);
    assert_eq!(start_cmd(&plan), Some("./index"));
    let named = self::plan(
        "plan-cobol",
        &[
            "NIXPACKS_COBOL_APP_NAME=payroll",
            "NIXPACKS_COBOL_COMPILE_ARGS=-x -free -o",
        ],
    );
    assert_eq!(
        cmds(&named, "build"),
        ["cobc -x -free -o payroll src/payroll.cbl"]
    );
    assert_eq!(start_cmd(&named), Some("./payroll"));
}

#[test]
fn procfile_web_starts_and_release_runs_after_build() {
    let plan = plan("plan-procfile", &[]);
    assert_eq!(start_cmd(&plan), Some("gunicorn app:app"));
    let release = plan.phase("release").unwrap();
    assert_eq!(strings(&release.cmds), ["python migrate.py"]);
    assert_eq!(strings(&release.depends_on), ["setup", "install", "build"]);
    // The app has no build phase; the release still runs last.
    assert_eq!(phase_order(&plan), ["setup", "install", "release"]);
}

#[test]
fn config_holes_extend_the_provider_plan() {
    let plan = plan("plan-config-holes", &[]);
    let setup = plan.phase("setup").unwrap();
    assert_eq!(strings(&setup.nix_pkgs), ["nodejs_18", "npm-9_x", "ffmpeg"]);
    assert_eq!(strings(&setup.apt_pkgs), ["curl"]);
    assert_eq!(cmds(&plan, "build"), ["echo before", "echo after"]);
    assert_eq!(phase_order(&plan), ["setup", "install", "build", "assets"]);
    assert_eq!(start_cmd(&plan), Some("node server.js"));
}

#[test]
fn cli_flags_win_over_config_file_and_environment() {
    let options = GeneratePlanOptions {
        env: Environment::from_args(&["NIXPACKS_START_CMD=from-env"], |_| None),
        config_file: None,
        cli_plan: PlanFlags {
            start_cmd: Some("from-flag".into()),
            apt: vec!["git".into()],
            ..PlanFlags::default()
        }
        .to_plan()
        .unwrap(),
    };
    let plan = generate_plan(&app("plan-config-holes"), &options).unwrap();
    assert_eq!(start_cmd(&plan), Some("from-flag"));
    assert_eq!(apt_pkgs(&plan, "setup"), ["git", "curl"]);
}

#[test]
fn static_site_settings_reach_nginx_conf() {
    let plan = plan("plan-static-public", &[]);
    let assets = plan.static_assets.unwrap();
    let conf = &assets["nginx.conf"];
    assert!(conf.contains("root\t  /app/public;"), "{conf}");
    assert!(conf.contains("autoindex on;"), "{conf}");
    assert!(conf.contains("\terror_page 404 /404.html;"), "{conf}");
    assert!(conf.contains("include\tmime.types;"), "{conf}");
    assert_eq!(assets["mime.types"], "text/html html;\n");
}

#[test]
fn end_to_end_fixture_apps_plan_as_the_build_expects() {
    let node = plan("node-server", &[]);
    assert_eq!(cmds(&node, "install"), ["npm ci"]);
    assert!(nix_pkgs(&node, "setup")[0].starts_with("nodejs_"));
    assert_eq!(start_cmd(&node), Some("npm run start"));

    let python = plan("python-server", &[]);
    assert_eq!(start_cmd(&python), Some("python main.py"));

    let site = plan("static-site", &[]);
    assert!(site.static_assets.unwrap()["nginx.conf"].contains("root\t  /app/site;"));

    let shell = plan("shell-app", &[]);
    assert_eq!(nix_pkgs(&shell, "setup"), ["busybox"]);
    assert_eq!(start_cmd(&shell), Some("bash start.sh"));

    let configured = plan("configured-app", &[]);
    assert_eq!(
        configured.variables.as_ref().unwrap()["GREETING"],
        "hello from kiln fixture configured-app"
    );
    assert_eq!(phase_order(&configured), ["setup", "build"]);
}

#[test]
fn detect_names_one_provider_per_app() {
    for (name, provider) in [
        ("plan-node-turbo", "node"),
        ("plan-python-poetry", "python"),
        ("plan-go-cmd", "go"),
        ("plan-rust-bins", "rust"),
        ("plan-ruby-rails", "ruby"),
        ("plan-php-laravel", "php"),
        ("plan-java-maven", "java"),
        ("plan-deno", "deno"),
        ("plan-static-public", "staticfile"),
        ("plan-crystal", "crystal"),
        ("plan-csharp", "c#"),
        ("plan-fsharp", "f#"),
        ("plan-dart", "dart"),
        ("plan-elixir-phoenix", "elixir"),
        ("plan-clojure-lein", "clojure"),
        ("plan-clojure-tools-build", "clojure"),
        ("plan-gleam", "gleam"),
        ("plan-haskell", "haskell"),
        ("plan-scheme", "scheme"),
        ("plan-lunatic", "lunatic"),
        ("plan-scala", "scala"),
        ("plan-swift", "swift"),
        ("plan-zig", "zig"),
        ("plan-cobol", "cobol"),
    ] {
        assert_eq!(
            detect_providers(&app(name), &options(&[])).unwrap(),
            [provider],
            "{name}"
        );
    }
    assert!(detect_providers(&app("shell-app"), &options(&[]))
        .unwrap()
        .is_empty());
}
