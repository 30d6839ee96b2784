//! Plans of our own fixture apps: each equals the plan upstream Nixpacks
//! prints for it (the goldens in `tests/fixtures/plans/`, written by
//! `providers/parity/parity.py --write-goldens`), and the fields the build
//! relies on are asserted by name.

use std::path::{Path, PathBuf};

use kiln_providers::{
    detect_providers, generate_plan, BuildPlan, Environment, GeneratePlanOptions, PlanFlags,
};
use serde_json::Value;

/// Static assets whose text kiln writes itself, left out of the goldens.
const OWN_ASSETS: &[&str] = &["Caddyfile", "nginx.template.conf", "php-fpm.conf"];

fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/apps")
        .join(name)
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

#[test]
fn every_plan_fixture_matches_upstreams_golden() {
    let goldens = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/plans");
    let mut checked = 0;
    for entry in std::fs::read_dir(&goldens).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        // Upstream's goldens were written on x86_64; musl targets follow the machine.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("x86_64", std::env::consts::ARCH);
        let golden: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            normalized(&plan(&name, &[])),
            golden,
            "{name} differs from upstream's plan"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} goldens found");
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
    assert_eq!(
        plan.start_phase.unwrap().cmd.as_deref(),
        Some("pnpm run start")
    );
    assert_eq!(plan.variables.unwrap()["NODE_ENV"], "production");
}

#[test]
fn node_version_env_wins_over_version_files() {
    let plan = plan("plan-node-pnpm-next", &["NIXPACKS_NODE_VERSION=22"]);
    assert_eq!(
        strings(&plan.phase("setup").unwrap().nix_pkgs)[0],
        "nodejs_22"
    );
}

#[test]
fn vite_spa_is_served_by_caddy_from_its_out_dir() {
    let plan = plan("plan-node-vite-spa", &[]);
    assert_eq!(
        strings(&plan.phase("setup").unwrap().nix_pkgs),
        ["nodejs_20", "yarn-1_x"]
    );
    assert_eq!(strings(&plan.phase("caddy").unwrap().nix_pkgs), ["caddy"]);
    assert_eq!(
        plan.variables.as_ref().unwrap()["NIXPACKS_SPA_OUTPUT_DIR"],
        "build"
    );
    assert!(
        plan.static_assets.as_ref().unwrap()["Caddyfile"].contains("{$NIXPACKS_SPA_OUTPUT_DIR}")
    );
    assert_eq!(
        plan.start_phase.unwrap().cmd.as_deref(),
        Some("exec caddy run --config /assets/Caddyfile --adapter caddyfile 2>&1")
    );
    let without_caddy = self::plan("plan-node-vite-spa", &["NIXPACKS_SPA_CADDY=false"]);
    assert!(without_caddy.phase("caddy").is_none());
}

#[test]
fn turbo_builds_with_turbo_and_starts_the_named_workspace() {
    let plan = plan("plan-node-turbo", &[]);
    assert_eq!(
        strings(&plan.phase("build").unwrap().cmds),
        ["npx turbo run build"]
    );
    assert_eq!(
        strings(&plan.phase("setup").unwrap().nix_pkgs)[1],
        "npm-8_x"
    );
    let named = self::plan("plan-node-turbo", &["NIXPACKS_TURBO_APP_NAME=web"]);
    assert_eq!(
        named.start_phase.unwrap().cmd.as_deref(),
        Some("npm --workspace web run start")
    );
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
        plan.start_phase.as_ref().unwrap().cmd.as_deref(),
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
    assert_eq!(
        strings(&plan.phase("setup").unwrap().nix_pkgs)[0],
        "python312"
    );
    assert!(strings(&plan.phase("install").unwrap().cmds)[0].contains("poetry install --no-dev"));
    assert_eq!(
        plan.start_phase.unwrap().cmd.as_deref(),
        Some("python -m inventory")
    );
    assert_eq!(plan.variables.unwrap()["NIXPACKS_POETRY_VERSION"], "1.8.2");
}

#[test]
fn go_builds_the_cmd_folder_into_a_slim_image() {
    let plan = plan("plan-go-cmd", &[]);
    assert_eq!(strings(&plan.phase("setup").unwrap().nix_pkgs), ["go_1_21"]);
    assert_eq!(
        strings(&plan.phase("build").unwrap().cmds),
        ["go build -o out ./cmd/server"]
    );
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
        strings(&glibc.phase("setup").unwrap().nix_pkgs),
        ["binutils", "gcc", "rust-bin.stable.latest.default"]
    );
    assert_eq!(
        strings(&glibc.phase("build").unwrap().cmds),
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
    assert_eq!(
        strings(&plan.phase("build").unwrap().cmds),
        ["bundle exec rake assets:precompile"]
    );
    assert_eq!(
        plan.start_phase.unwrap().cmd.as_deref(),
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
    assert_eq!(
        strings(&plan.phase("setup").unwrap().nix_pkgs),
        ["jdk17", "gradle_7"]
    );
    assert_eq!(
        strings(&plan.phase("build").unwrap().cmds),
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
    assert_eq!(
        strings(&plan.phase("setup").unwrap().nix_pkgs),
        ["jdk21", "maven"]
    );
    assert!(
        strings(&plan.phase("build").unwrap().cmds)[0].starts_with("chmod +x ./mvnw && ./mvnw ")
    );
    assert_eq!(
        plan.start_phase.unwrap().cmd.as_deref(),
        Some("java -Dserver.port=$PORT $JAVA_OPTS -jar target/*jar")
    );
}

#[test]
fn deno_start_task_from_jsonc_wins() {
    let plan = plan("plan-deno", &[]);
    assert_eq!(
        strings(&plan.phase("build").unwrap().cmds),
        ["deno cache src/index.ts"]
    );
    assert_eq!(
        plan.start_phase.unwrap().cmd.as_deref(),
        Some("deno run --allow-net src/index.ts")
    );
}

#[test]
fn procfile_web_starts_and_release_runs_after_build() {
    let plan = plan("plan-procfile", &[]);
    assert_eq!(
        plan.start_phase.as_ref().unwrap().cmd.as_deref(),
        Some("gunicorn app:app")
    );
    let release = plan.phase("release").unwrap();
    assert_eq!(strings(&release.cmds), ["python migrate.py"]);
    assert_eq!(strings(&release.depends_on), ["setup", "install", "build"]);
    // The app has no build phase; the release still runs last.
    let order: Vec<&str> = plan
        .phases_in_order()
        .unwrap()
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(order, ["setup", "install", "release"]);
}

#[test]
fn config_holes_extend_the_provider_plan() {
    let plan = plan("plan-config-holes", &[]);
    let setup = plan.phase("setup").unwrap();
    assert_eq!(strings(&setup.nix_pkgs), ["nodejs_18", "npm-9_x", "ffmpeg"]);
    assert_eq!(strings(&setup.apt_pkgs), ["curl"]);
    assert_eq!(
        strings(&plan.phase("build").unwrap().cmds),
        ["echo before", "echo after"]
    );
    let order: Vec<&str> = plan
        .phases_in_order()
        .unwrap()
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(order, ["setup", "install", "build", "assets"]);
    assert_eq!(
        plan.start_phase.unwrap().cmd.as_deref(),
        Some("node server.js")
    );
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
    assert_eq!(
        plan.start_phase.as_ref().unwrap().cmd.as_deref(),
        Some("from-flag")
    );
    assert_eq!(
        strings(&plan.phase("setup").unwrap().apt_pkgs),
        ["git", "curl"]
    );
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
    assert_eq!(strings(&node.phase("install").unwrap().cmds), ["npm ci"]);
    assert!(strings(&node.phase("setup").unwrap().nix_pkgs)[0].starts_with("nodejs_"));
    assert_eq!(
        node.start_phase.unwrap().cmd.as_deref(),
        Some("npm run start")
    );

    let python = plan("python-server", &[]);
    assert_eq!(
        python.start_phase.unwrap().cmd.as_deref(),
        Some("python main.py")
    );

    let site = plan("static-site", &[]);
    assert!(site.static_assets.unwrap()["nginx.conf"].contains("root\t  /app/site;"));

    let shell = plan("shell-app", &[]);
    assert_eq!(
        strings(&shell.phase("setup").unwrap().nix_pkgs),
        ["busybox"]
    );
    assert_eq!(
        shell.start_phase.unwrap().cmd.as_deref(),
        Some("bash start.sh")
    );

    let configured = plan("configured-app", &[]);
    assert_eq!(
        configured.variables.as_ref().unwrap()["GREETING"],
        "hello from kiln fixture configured-app"
    );
    let order: Vec<&str> = configured
        .phases_in_order()
        .unwrap()
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(order, ["setup", "build"]);
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
