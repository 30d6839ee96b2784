// kiln: renders the nginx template before nginx starts.
// Usage: node prestart.mjs TEMPLATE OUTPUT
// Every ${NAME} in TEMPLATE is replaced by the environment variable NAME;
// the few nginx needs have defaults so the image starts without settings.
import { readFileSync, writeFileSync, readdirSync, existsSync } from "node:fs";

const [template, output] = process.argv.slice(2);
if (!template || !output) {
  console.error("usage: node prestart.mjs TEMPLATE OUTPUT");
  process.exit(2);
}

// nginx's own mime.types and fastcgi_params live in its Nix store path.
const nginxConf = (name) => {
  const store = "/nix/store";
  const dir = existsSync(store)
    ? readdirSync(store).find((d) => /-nginx-[0-9]/.test(d) && existsSync(`${store}/${d}/conf/${name}`))
    : undefined;
  return dir ? `${store}/${dir}/conf/${name}` : `/etc/nginx/${name}`;
};

const defaults = {
  PORT: "80",
  NIXPACKS_PHP_ROOT_DIR: "/app",
  NIXPACKS_NGINX_MIME_TYPES: nginxConf("mime.types"),
  NIXPACKS_NGINX_FASTCGI_PARAMS: nginxConf("fastcgi_params"),
};

const text = readFileSync(template, "utf8").replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name) =>
  process.env[name] ?? defaults[name] ?? "",
);
writeFileSync(output, text);
