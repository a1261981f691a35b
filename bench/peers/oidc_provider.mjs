// The peer for the token scenario: Node oidc-provider (a certified OpenID Provider)
// issuing client_credentials access tokens as EdDSA-signed JWTs for one resource —
// the same work ctxguard's token endpoint does. Its default in-memory adapter is
// used, which spares it the database ctxguard writes nothing to either for this grant.
// Usage: node oidc_provider.mjs PORT CLIENT_SECRET
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const secret = process.argv[3];
const issuer = `http://127.0.0.1:${port}`;
const resource = `${issuer}/context`;
const { privateKey } = generateKeyPairSync('ed25519');
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'EdDSA', use: 'sig', kid: 'bench' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bench',
    client_secret: secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'EdDSA',
  }],
  jwks: { keys: [jwk] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'context:read context:write',
        audience: resource,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'EdDSA' } },
      }),
    },
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`peer listening on ${issuer}`));
