// Agora's own AccessToken2 code (npm `agora-token`, installed by tests/testbed/agora-token.sh)
// on the other side of understudy's: builds Agora Chat app tokens with it, and reads and
// verifies tokens understudy built.
//
// Usage: node token_check.js <agora-token install dir>   (the request on stdin, JSON)
// Request:  { appId, appCertificate, expire,
//             otherCertificate,        // builds one more app token signed with it
//             tokens: [string...] }    // tokens to parse and verify
// Answer:   { version, appToken, otherCertificateAppToken,
//             parsed: [{ ok, appId, issueTs, expire, salt, services: [{ type, privileges, userId }],
//                        signatureValid, signatureValidWithOtherCertificate }] }
'use strict';
const path = require('path');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node token_check.js <agora-token install dir>');
  process.exit(2);
}
const pkg = path.join(dir, 'node_modules', 'agora-token');
const { ChatTokenBuilder } = require(pkg);
const { AccessToken2 } = require(path.join(pkg, 'src', 'AccessToken2'));
const { version } = require(path.join(pkg, 'package.json'));

const request = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const { appId, appCertificate, expire, otherCertificate, tokens = [] } = request;

function parse(token) {
  const t = new AccessToken2();
  if (!t.from_string(token)) return { ok: false };
  return {
    ok: true,
    appId: t.appId.toString(),
    issueTs: t.issueTs,
    expire: t.expire,
    salt: t.salt,
    services: t.services.map(s => ({
      type: s.service_type(),
      privileges: s.__privileges,
      userId: s.__user_id === undefined ? null : s.__user_id.toString(),
    })),
    // The package's own check: the HMAC chain over the signed bytes, compared in
    // constant time.
    signatureValid: t.verifySignature(appCertificate),
    signatureValidWithOtherCertificate: otherCertificate ? t.verifySignature(otherCertificate) : null,
  };
}

const answer = {
  version,
  appToken: ChatTokenBuilder.buildAppToken(appId, appCertificate, expire),
  otherCertificateAppToken: otherCertificate
    ? ChatTokenBuilder.buildAppToken(appId, otherCertificate, expire)
    : null,
  parsed: tokens.map(parse),
};
if (!answer.appToken) {
  console.error('agora-token built no token: the App ID and certificate must be 32 hex digits');
  process.exit(1);
}
process.stdout.write(JSON.stringify(answer) + '\n');
