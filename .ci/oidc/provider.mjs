// provider.mjs: a real OpenID provider (node's oidc-provider) for the OIDC
// tests of DeltaDatabase (oidc_provider_test.go starts it as a child process).
//
//   node provider.mjs            OIDC_PROVIDER_DIR names the directory whose
//                                node_modules holds oidc-provider (.ci/oidc.sh)
//
// It listens on 127.0.0.1 (a free port), prints one JSON line
// {"issuer": "http://127.0.0.1:PORT"} on stdout once it serves, and runs until
// stdin closes. Clients use the client-credentials grant and get JWT access
// tokens for the audience AUDIENCE carrying deltadb.permissions and
// deltadb.databases from the client's metadata. POST /test/rotate (this
// script's own control route, not part of OpenID) makes a new signing key the
// first of the JWKS and keeps the old one published, as providers rotate.
//
// The web UI's client, UI_CLIENT, is a public client (no secret) with the
// authorization_code grant and PKCE; a person signs in through the provider's
// development login and consent pages (any password; the login is the
// account, whose permissions are in ACCOUNTS) and the access token is a JWT
// for AUDIENCE when the scope asks for "deltadb". Its redirect URI is the
// DeltaDatabase server's, whose port a test learns only after this provider
// runs: POST /test/ui-client {"redirect_uri": URL} sets it.
import { createRequire } from 'node:module';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

// step says on stderr how far the start got, and when: a test that waits
// for the issuer line prints it if the line does not come.
const step = (what) => console.error(`provider.mjs: ${what} (${Math.round(process.uptime() * 1000)} ms after start)`);

const dir = process.env.OIDC_PROVIDER_DIR;
if (!dir) {
  console.error('provider.mjs: OIDC_PROVIDER_DIR is not set');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(dir), 'package.json'));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);
step('oidc-provider loaded');

export const AUDIENCE = 'https://deltadb.test';
const SECRET = 'deltadb-test-client-secret';

// The clients of the tests: what each token may do, and how it is signed.
const clients = {
  reader: { perms: ['read'], alg: 'RS256' },
  writer: { perms: ['read', 'write'], alg: 'PS256' },
  scoped: { perms: ['read', 'write'], dbs: ['team-a', 'shared*'], alg: 'ES256' },
  admin: { perms: ['admin'], alg: 'RS256' },
  nobody: { perms: [], alg: 'RS256' },
  otheraud: { perms: ['admin'], alg: 'RS256', audience: 'https://someone-else.test' },
};

// newKey makes a signing key as a private JWK.
function newKey(alg) {
  const kp = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...kp.privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg, use: 'sig' };
}

let keys = ['RS256', 'PS256', 'ES256'].map(newKey);
step('signing keys made');

export const UI_CLIENT = 'deltadb-ui';
// The accounts of the UI's sign-in: what each login may do.
const ACCOUNTS = {
  'ui-admin': { perms: ['admin'] },
  'ui-reader': { perms: ['read'] },
  'ui-team': { perms: ['read', 'write'], dbs: ['team-*'] },
};
let uiRedirect = 'http://127.0.0.1/';

function build(issuer) {
  const p = new Provider(issuer, {
    clients: [
      ...Object.keys(clients).map((id) => ({
        client_id: id,
        client_secret: SECRET,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      })),
      {
        client_id: UI_CLIENT,
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [uiRedirect],
      },
    ],
    jwks: { keys },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => {
          const c = clients[client.clientId] ?? { alg: 'RS256' };
          return {
            scope: 'deltadb',
            audience: c.audience ?? resource,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: c.alg } },
          };
        },
      },
    },
    extraTokenClaims: (ctx, token) => {
      const c = token.clientId === UI_CLIENT ? ACCOUNTS[token.accountId] ?? { perms: [] } : clients[token.clientId];
      if (!c) return undefined;
      const deltadb = { permissions: c.perms };
      if (c.dbs) deltadb.databases = c.dbs;
      return { deltadb };
    },
  });
  p.on('server_error', (ctx, err) => console.error('provider.mjs: server_error', err));
  return p;
}

let provider;
const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/test/ui-client') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      uiRedirect = JSON.parse(body).redirect_uri;
      provider = build(provider.issuer);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ client_id: UI_CLIENT, redirect_uri: uiRedirect }));
    });
    return;
  }
  if (req.method === 'POST' && req.url === '/test/rotate') {
    // The new keys come first, so they sign; the old ones stay published
    // for the tokens already issued.
    keys = [...['RS256', 'PS256', 'ES256'].map(newKey), ...keys];
    provider = build(provider.issuer);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kids: keys.slice(0, 3).map((k) => k.kid) }));
    return;
  }
  provider.callback()(req, res);
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  step(`listening on port ${port}`);
  provider = build(`http://127.0.0.1:${port}`);
  process.stdout.write(JSON.stringify({ issuer: provider.issuer }) + '\n');
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
