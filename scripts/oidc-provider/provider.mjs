// A real OpenID Connect provider for CaseScope's tests: panva/node-oidc-provider (OpenID
// Certified) with a login form of its own and four users in groups. It grants consent on
// login (the test plays the browser: GET the authorization URL, POST the form, follow
// the redirects). Usage: node provider.mjs PORT. Never used outside the tests.
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;

const USERS = {
  alice: { password: 'alice-idp-password', name: 'Alice Admin', groups: ['dfir-admins', 'staff'] },
  carol: { password: 'carol-idp-password', name: 'Carol Analyst', groups: ['dfir'] },
  'dave@example.org': { password: 'dave-idp-password', name: 'Dave', groups: 'dfir-auditors' },
  mallory: { password: 'mallory-idp-password', name: 'Mallory', groups: ['marketing'] },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'casescope-cli',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      // The CLI's loopback listener, and the web app's callback (any loopback port).
      redirect_uris: ['http://127.0.0.1/callback', 'http://127.0.0.1/oidc/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  cookies: { keys: ['casescope-test-cookie-key'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: `subject-${id}`,
          preferred_username: id.includes('@') ? undefined : id,
          name: user.name,
          email: id.includes('@') ? id : `${id}@example.org`,
          groups: user.groups,
        };
      },
    };
  },
});

function form(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10000) reject(new Error('too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
  });
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    const login = req.url.match(/^\/interaction\/([^/?]+)\/login$/);
    if (req.method === 'POST' && login) {
      const fields = await form(req);
      const details = await provider.interactionDetails(req, res);
      const name = fields.get('login');
      const user = USERS[name];
      if (!user || user.password !== fields.get('password')) {
        await provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: 'wrong username or password',
        });
        return;
      }
      const grant = new provider.Grant({ accountId: name, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, {
        login: { accountId: name },
        consent: { grantId },
      }, { mergeWithLastSubmission: false });
      return;
    }
    if (req.method === 'GET' && /^\/interaction\/[^/?]+$/.test(req.url)) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<form method=post action="${req.url}/login"><input name=login><input name=password type=password><button>Sign in</button></form>`);
      return;
    }
    callback(req, res);
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(error));
  }
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
