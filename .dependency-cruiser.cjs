/**
 * Import rules (DESIGN.md, "Conventions for new parts"): no cycles, and no import pointing upward —
 * api → rooms / sync / federation → actors → runtime → store; everything → protocol. Run by
 * `npm test` (scripts/test) before vitest: `npm run depcheck`.
 *
 * .dependency-cruiser-known-violations.json (`--ignore-known`) lists edges that break a rule
 * and are waiting for their move: they pass, anything new fails. It is empty: every layer
 * imports only downward. Regenerate it only when removing entries (npm run depcheck:baseline).
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Import cycles make load order matter and layers meaningless. Type-only imports count: a type cycle is a design cycle.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'protocol-is-pure',
      severity: 'error',
      comment: 'src/protocol is the pure Matrix library (DESIGN rule 5): it imports nothing else of ours.',
      from: { path: '^src/protocol/' },
      to: { path: '^(src/(?!protocol/)|actors/|scripts/|test/|cluster\\.config)' },
    },
    {
      name: 'protocol-no-io',
      severity: 'error',
      comment: 'src/protocol does no I/O (DESIGN rule 5): of node\'s modules it imports only crypto (computation) — not module (native code is loaded in src/crypto/), fs, child_process, net…; of the npm packages only tweetnacl — not ioredis, not sodium-native.',
      from: { path: '^src/protocol/' },
      to: { dependencyTypes: ['core'], pathNot: '^(node:)?crypto$' },
    },
    {
      name: 'protocol-no-packages',
      severity: 'error',
      comment: 'See protocol-no-io: src/protocol imports no npm package but tweetnacl (ioredis, sodium-native and the rest are I/O or native code).',
      from: { path: '^src/protocol/' },
      to: { path: '(^|/)node_modules/', pathNot: '(^|/)node_modules/tweetnacl/' },
    },
    {
      name: 'native-crypto-below-components',
      severity: 'error',
      comment: 'src/crypto loads native code for src/protocol (the libsodium signer) and is installed by the process entries: it imports only src/protocol.',
      from: { path: '^src/crypto/' },
      to: { path: '^(src/(?!protocol/|crypto/)|actors/|scripts/|test/|cluster\\.config)' },
    },
    {
      name: 'lower-layers-not-api',
      severity: 'error',
      comment: 'actors, the runtime, the store, readers and the HTTP front sit below the API: they never import it.',
      from: { path: '^(actors|src/runtime|src/store|src/readers|src/http)/' },
      to: { path: '^src/api/' },
    },
    {
      name: 'components-not-api',
      severity: 'error',
      comment: 'src/rooms, src/sync, src/federation and src/appservice are called by the APIs, not the other way round; the shared ApiContext contract (src/api/context.ts) is the one exception.',
      from: { path: '^src/(rooms|sync|federation|appservice)/' },
      to: { path: '^src/api/', pathNot: '^src/api/context\\.ts$' },
    },
    {
      name: 'actors-below-components',
      severity: 'error',
      comment: 'Actors, runtime and store do not import the components above them (rooms, sync, federation), except the pure contract and check modules of rooms: model.ts, ingest.ts, and own-signatures.ts (our signature on our events, added as they leave: the federation sender\'s destination actor is one of the ways out).',
      from: { path: '^(actors|src/runtime|src/store)/' },
      to: { path: '^src/(rooms|sync|federation)/', pathNot: '^src/rooms/(model|ingest|own-signatures)\\.ts$' },
    },
    {
      name: 'store-below-actors',
      severity: 'error',
      comment: 'The store is the bottom layer: it does not import actors or the runtime.',
      from: { path: '^src/store/' },
      to: { path: '^(actors|src/runtime)/' },
    },
    {
      name: 'runtime-below-actors',
      severity: 'error',
      comment: 'The runtime runs actors of any kind; it does not import a particular one.',
      from: { path: '^src/runtime/', pathNot: '^src/runtime/kinds\\.ts$' },
      to: { path: '^actors/' },
    },
    {
      name: 'metrics-is-a-leaf',
      severity: 'error',
      comment: 'src/ops/metrics.ts (the Prometheus registry) is recorded into from every layer, so it imports nothing of ours.',
      from: { path: '^src/ops/metrics\\.ts$' },
      to: { path: '^(src|actors|scripts|test)/|^cluster\\.config' },
    },
    {
      name: 'ops-above-components',
      severity: 'error',
      comment: 'The rest of src/ops (the metrics server, process wiring, the dashboard) sits at the top with the process entries: only src/ops/metrics.ts is imported from below.',
      from: { path: '^(actors|src/(runtime|store|readers|http|rooms|sync|federation|push|media|search|api|protocol))/' },
      to: { path: '^src/ops/', pathNot: '^src/ops/metrics\\.ts$' },
    },
    {
      name: 'no-test-imports',
      severity: 'error',
      comment: 'Production code never imports test code.',
      from: { path: '^(src|actors|scripts)/' },
      to: { path: '^test/' },
    },
  ],
  options: {
    // npm packages are in the graph (as leaves, not followed) so that rules can name them (protocol-no-packages).
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js', '.json'] },
    cache: false,
  },
};
