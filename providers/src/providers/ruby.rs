//! Ruby apps: `Gemfile`; Ruby through rbenv at the version from
//! `NIXPACKS_RUBY_VERSION`, `.ruby-version`, `Gemfile` or `Gemfile.lock`;
//! Rails (assets, bootsnap), Rack and Sinatra; Node's install phase for
//! apps that also have JavaScript or use execjs.

use regex::Regex;

use super::node::Node;
use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::{App, Environment, PlanError};

const BUNDLE_CACHE_DIR: &str = "/root/.bundle/cache";
/// What ruby-build needs to compile Ruby on Debian and Ubuntu.
const RBENV_APT_PKGS: &[&str] = &[
    "git",
    "curl",
    "autoconf",
    "bison",
    "build-essential",
    "libssl-dev",
    "libyaml-dev",
    "libreadline6-dev",
    "zlib1g-dev",
    "libncurses5-dev",
    "libffi-dev",
    "libgdbm6",
    "libgdbm-dev",
    "libdb-dev",
];

/// The Ruby provider.
pub struct Ruby;

impl Provider for Ruby {
    fn name(&self) -> &'static str {
        "ruby"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("Gemfile"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let version = ruby_version(app, env)?;
        let mut plan = BuildPlan::new(
            vec![setup(app, &version), install(app, &version), build(app)],
            start_command(app).map(StartPhase::new),
        );
        if Node.detect(app, env)? || uses_gem(app, "execjs") {
            if let Some(node_plan) = Node.plan(app, env)? {
                for mut phase in phase_with_dependencies(&node_plan, "install") {
                    // Upstream renames the phases but not their dependencies.
                    phase.name = Some(format!("node:{}", phase.name()));
                    plan.add_phase(phase);
                }
                if let Some(build) = plan.phase_mut("build") {
                    build.depends_on_phase("node:install");
                }
            }
        }
        let mut variables = Variables::from([
            ("BUNDLE_GEMFILE".to_string(), "/app/Gemfile".to_string()),
            (
                "GEM_PATH".to_string(),
                format!("/usr/local/rvm/gems/{version}:/usr/local/rvm/gems/{version}@global"),
            ),
            (
                "GEM_HOME".to_string(),
                format!("/usr/local/rvm/gems/{version}"),
            ),
            ("MALLOC_ARENA_MAX".to_string(), "2".to_string()),
        ]);
        if is_rails(app) {
            variables.insert("RAILS_LOG_TO_STDOUT".into(), "enabled".into());
            variables.insert("RAILS_SERVE_STATIC_FILES".into(), "1".into());
        }
        plan.add_variables(variables);
        Ok(Some(plan))
    }
}

/// A phase and every phase it depends on, directly or not.
fn phase_with_dependencies(plan: &BuildPlan, name: &str) -> Vec<Phase> {
    let mut found: Vec<Phase> = Vec::new();
    let mut todo = vec![name.to_string()];
    while let Some(next) = todo.pop() {
        if found.iter().any(|p| p.name() == next) {
            continue;
        }
        if let Some(phase) = plan.phase(&next) {
            todo.extend(phase.depends_on.iter().flatten().cloned());
            found.push(phase.clone());
        }
    }
    found
}

fn setup(app: &App, version: &str) -> Phase {
    let mut setup = Phase::setup(None);
    setup.add_apt_pkgs(&["procps"]);
    // An empty list: code changes never reinstall Ruby.
    setup.only_include_files = Some(Vec::new());
    let gemfile = app.read_file("Gemfile").unwrap_or_default();
    if gemfile.contains("pg") {
        setup.add_apt_pkgs(&["libpq-dev"]);
    }
    if gemfile.contains("mysql") {
        setup.add_apt_pkgs(&["default-libmysqlclient-dev"]);
    }
    if uses_gem(app, "magick") {
        setup.add_apt_pkgs(&["libmagickwand-dev"]);
        setup.add_nix_pkgs(&[Pkg::new("imagemagick")]);
    }
    if uses_gem(app, "vips") {
        setup.add_apt_pkgs(&["libvips-dev"]);
    }
    if uses_gem(app, "charlock_holmes") {
        setup.add_apt_pkgs(&["libicu-dev"]);
    }
    let version = version.trim_start_matches("ruby-");
    let mut parts = version.split('.').map(|p| p.parse::<u8>());
    if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
        // YJIT (Ruby 3.1 and later) needs rustc to build; upstream's test
        // is per part, so 4.0 does not count.
        if major >= 3 && minor >= 1 {
            setup.add_nix_pkgs(&[Pkg::new("rustc")]);
        }
    }
    setup.add_apt_pkgs(RBENV_APT_PKGS);
    let bundler = bundler_gem(app);
    setup.add_cmd(format!(
        "curl -fsSL https://github.com/rbenv/rbenv-installer/raw/HEAD/bin/rbenv-installer | bash -s stable && printf '\\neval \"$(~/.rbenv/bin/rbenv init -)\"' >> /root/.profile && . /root/.profile && rbenv install {version} && rbenv global {version} && gem install {bundler}"
    ));
    setup.add_path("$HOME/.rbenv/bin");
    setup
}

fn install(app: &App, version: &str) -> Phase {
    let mut install = Phase::install(None);
    install.add_cache_directory(BUNDLE_CACHE_DIR);
    if !uses_gem(app, "local") {
        install.only_include_files = Some(vec!["Gemfile".into(), "Gemfile.lock".into()]);
    }
    install.add_cmd("bundle install");
    if uses_gem(app, "bootsnap") {
        install.add_cmd("bundle exec bootsnap precompile --gemfile");
    }
    install.add_path(format!("/usr/local/rvm/rubies/{version}/bin"));
    install.add_path(format!("/usr/local/rvm/gems/{version}/bin"));
    install.add_path(format!("/usr/local/rvm/gems/{version}@global/bin"));
    install
}

fn build(app: &App) -> Phase {
    let mut build = Phase::build(None);
    let rails = is_rails(app);
    if rails
        && app.includes_file("Gemfile")
        && (uses_gem(app, "sprockets") || uses_gem(app, "propshaft"))
    {
        build.add_cmd("bundle exec rake assets:precompile");
    }
    if rails && uses_gem(app, "bootsnap") {
        build.add_cmd("bundle exec bootsnap precompile app/ lib/");
    }
    build
}

fn start_command(app: &App) -> Option<String> {
    let cmd = if is_rails(app) {
        if app.includes_file("rails") {
            "bundle exec rails server -b 0.0.0.0 -p ${PORT:-3000}"
        } else {
            "bundle exec bin/rails server -b 0.0.0.0 -p ${PORT:-3000} -e $RAILS_ENV"
        }
    } else if app.includes_file("config/environment.rb") && app.includes_directory("script") {
        "bundle exec ruby script/server -p ${PORT:-3000}"
    } else if app.includes_file("config.ru") {
        "bundle exec rackup config.ru -p ${PORT:-3000}"
    } else if app.includes_file("Rakefile") {
        "bundle exec rake"
    } else {
        return None;
    };
    Some(cmd.into())
}

fn ruby_version(app: &App, env: &Environment) -> Result<String, PlanError> {
    if let Some(version) = env.config("RUBY_VERSION") {
        return Ok(version);
    }
    if app.includes_file(".ruby-version") {
        return Ok(app.read_file(".ruby-version")?.trim().to_string());
    }
    let in_gemfile = Regex::new(r#"ruby (?:'|")(.*)(?:'|")[^>]"#).expect("valid pattern");
    if let Some(m) = in_gemfile.captures(&app.read_file("Gemfile").unwrap_or_default()) {
        return Ok(format!("ruby-{}", &m[1]));
    }
    let in_lock = Regex::new(r"ruby ((?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*))[^>]")
        .expect("valid pattern");
    if let Some(m) = in_lock.captures(&app.read_file("Gemfile.lock").unwrap_or_default()) {
        return Ok(format!("ruby-{}", &m[1]));
    }
    Err(PlanError::Provider {
        provider: "ruby",
        message: "no Ruby version found; put it in .ruby-version (e.g. `3.3.0`), in the Gemfile (`ruby \"3.3.0\"`) or in NIXPACKS_RUBY_VERSION".into(),
    })
}

/// `bundler:<version>` from the line after `BUNDLED WITH` in `Gemfile.lock`.
fn bundler_gem(app: &App) -> String {
    let lock = app.read_file("Gemfile.lock").unwrap_or_default();
    let lines: Vec<&str> = lock.split('\n').collect();
    lines
        .windows(2)
        .find(|pair| pair[0].contains("BUNDLED WITH"))
        .map_or_else(
            || "bundler".into(),
            |pair| format!("bundler:{}", pair[1].trim()),
        )
}

fn is_rails(app: &App) -> bool {
    app.read_file("config/application.rb")
        .is_ok_and(|t| t.contains("Rails::Application"))
}

/// Whether `Gemfile` or `Gemfile.lock` mentions the text (upstream matches text, not gem names).
fn uses_gem(app: &App, name: &str) -> bool {
    ["Gemfile", "Gemfile.lock"]
        .iter()
        .any(|f| app.read_file(f).unwrap_or_default().contains(name))
}
