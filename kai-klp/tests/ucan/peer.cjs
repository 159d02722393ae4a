// The other side of kai-klp's UCAN interop test (tests/ucan_interop.rs), written with @ucans/ucans, the
// UCAN 0.8.1 implementation from the UCAN working group. Lines of JSON on stdin and stdout:
//
// 1. Given the DID of the kAI agent (argv[2]), it prints the tokens it issues to that agent: a chain
//    root → delegate → agent, a direct grant with a nonce and facts, and a link that escalates beyond
//    its proof (which kAI must refuse). It also names the DID of its holder, to which kAI issues tokens.
// 2. It reads the tokens kAI issued to its holder and prints, for each, what ucans.verify says.
"use strict";

const readline = require("node:readline");
const ucans = require("@ucans/ucans");

const capability = (resource, ability) => ucans.capability.parse({ with: resource, can: ability });

async function main() {
  const agent = process.argv[2];
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const [root, delegate, holder] = await Promise.all([1, 2, 3].map(() => ucans.EdKeypair.create()));

  const add = capability("tool:add", "tool/call");
  const grant = await ucans.build({
    issuer: root,
    audience: delegate.did(),
    lifetimeInSeconds: 3600,
    capabilities: [add, capability("tool:sub", "tool/call")],
  });
  const chain = await ucans.build({
    issuer: delegate,
    audience: agent,
    lifetimeInSeconds: 600,
    capabilities: [add],
    proofs: [ucans.encode(grant)],
  });
  const direct = await ucans.build({
    issuer: root,
    audience: agent,
    lifetimeInSeconds: 600,
    capabilities: [capability("TOOL:add", "Tool/CALL")],
    facts: [{ ticket: "T-1" }],
    addNonce: true,
  });
  const escalating = await ucans.build({
    issuer: delegate,
    audience: agent,
    lifetimeInSeconds: 600,
    capabilities: [capability("tool:delete", "tool/call")],
    proofs: [ucans.encode(grant)],
  });
  console.log(JSON.stringify({
    root: root.did(),
    holder: holder.did(),
    chain: ucans.encode(chain),
    direct: ucans.encode(direct),
    escalating: ucans.encode(escalating),
  }));

  const issued = JSON.parse((await lines.next()).value);
  const verdicts = {};
  for (const [name, { token, resource, ability, root: rootIssuer }] of Object.entries(issued.tokens)) {
    const result = await ucans.verify(token, {
      audience: holder.did(),
      requiredCapabilities: [{ capability: capability(resource, ability), rootIssuer }],
    });
    verdicts[name] = result.ok ? { ok: true } : { ok: false, errors: result.error.map(String) };
  }
  console.log(JSON.stringify(verdicts));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
