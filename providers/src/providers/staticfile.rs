//! Static sites served by nginx: a `Staticfile`, or a `public`, `dist`,
//! `index` folder or `index.html`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, StaticAssets};
use crate::{App, Environment, PlanError};

/// The static-site provider.
pub struct Staticfile;

/// The settings a `Staticfile` may hold (YAML).
#[derive(Debug, Default, Deserialize)]
struct Settings {
    root: Option<String>,
    directory: Option<String>,
    gzip: Option<String>,
    status_code: Option<BTreeMap<u32, String>>,
}

impl Provider for Staticfile {
    fn name(&self) -> &'static str {
        "staticfile"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("Staticfile")
            || app.includes_directory("public")
            || app.includes_directory("index")
            || app.includes_directory("dist")
            || app.includes_file("index.html"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut setup = Phase::setup(Some(vec![Pkg::new("nginx")]));
        setup.add_cmd("mkdir /etc/nginx/ /var/log/nginx/ /var/cache/nginx/");
        let conf = app.asset_path("nginx.conf");
        let start = StartPhase::new(format!(
            "[[ -z \"${{PORT}}\" ]] && echo \"Environment variable PORT not found. Using PORT 80\" || sed -i \"s/0.0.0.0:80/$PORT/g\" {conf} && nginx -c {conf}"
        ));
        let mut plan = BuildPlan::new(vec![setup], Some(start));
        plan.add_static_assets(static_assets(app, env)?);
        Ok(Some(plan))
    }
}

/// The folder nginx serves, relative to `/app`.
pub fn root(app: &App, env: &Environment, from_staticfile: Option<String>) -> String {
    env.config("STATICFILE_ROOT")
        .or(from_staticfile.filter(|r| !r.is_empty()))
        .or_else(|| {
            ["public", "dist", "index"]
                .into_iter()
                .find(|d| app.includes_directory(d))
                .map(String::from)
        })
        .unwrap_or_default()
}

fn static_assets(app: &App, env: &Environment) -> Result<StaticAssets, PlanError> {
    let mut assets = StaticAssets::new();
    let mut mime_types = "include /nix/store/*-user-environment/conf/mime.types;".to_string();
    if app.includes_file("mime.types") {
        assets.insert("mime.types".into(), app.read_file("mime.types")?);
        mime_types = "include\tmime.types;".into();
    }
    let mut auth_basic = String::new();
    if app.includes_file("Staticfile.auth") {
        assets.insert(".htpasswd".into(), app.read_file("Staticfile.auth")?);
        auth_basic = format!(
            "auth_basic\t\"Password Required\";\nauth_basic_user_file\t{};",
            app.asset_path(".htpasswd")
        );
    }
    // Upstream ignores a Staticfile it cannot parse and uses the defaults.
    let settings: Settings = app.read_yaml("Staticfile").unwrap_or_default();
    let root = root(app, env, settings.root);
    let gzip = settings.gzip.unwrap_or_else(|| "on".into());
    let directory = settings.directory.unwrap_or_else(|| "off".into());
    let error_pages: String = settings
        .status_code
        .unwrap_or_default()
        .iter()
        .map(|(code, page)| format!("\terror_page {code} {page};\n"))
        .collect();
    let conf = [
        "daemon off;",
        "error_log /dev/stdout info;",
        "worker_processes  auto;",
        "events {",
        "    worker_connections  1024;",
        "}",
        "",
        "http {",
        &format!("    {mime_types}"),
        "    access_log /dev/stdout;",
        "    default_type  application/octet-stream;",
        "    sendfile       on;",
        "    keepalive_timeout  60;",
        "    types_hash_max_size 4096;",
        "    server {",
        "        listen    0.0.0.0:80;",
        &format!("        gzip  \t  {gzip};"),
        &format!("        root\t  /app/{root};"),
        "        location / {",
        &format!("            {auth_basic}"),
        &format!("            autoindex {directory};"),
        "        }",
        &error_pages,
        "    }",
        "}",
        "",
    ]
    .join("\n");
    assets.insert("nginx.conf".into(), conf);
    Ok(assets)
}
