// The browser entry the Hydrogen test bundles with esbuild (test/browser/hydrogen-app.ts): the whole
// Hydrogen app (login view, session, room list, timeline, composer) from the prebuilt
// hydrogen-view-sdk, assembled the way Hydrogen's own main does. The homeserver field is pre-filled
// from `?hs=` so the test can point it at the Axon it started.
// The service worker is not optional in 0.3.1: the session start hands it the access token
// (platform.updateService is the service worker's handler). Each run's Chromium profile is fresh,
// so it does not outlive the test.
import { Platform, createNavigation, createRouter, RootViewModel, RootView, FeatureSet } from "hydrogen-view-sdk";

const assetPaths = {
  downloadSandbox: "assets/download-sandbox.html",
  worker: "assets/main.js",
  olm: { wasm: "olm/olm.wasm", legacyBundle: "olm/olm_legacy.js", wasmBundle: "olm/olm.js" },
  serviceWorker: "sw.js",
};

async function main() {
  const app = document.querySelector("#app");
  const homeserver = new URLSearchParams(location.search).get("hs");
  const config = { defaultHomeServer: homeserver ?? "http://127.0.0.1:8008" };
  const platform = new Platform({ container: app, assetPaths, config, options: { development: true } });
  await platform.init();
  const navigation = createNavigation();
  platform.setNavigation(navigation);
  const urlRouter = createRouter({ navigation, history: platform.history });
  urlRouter.attach();
  const features = await FeatureSet.load(platform.settingsStorage);
  const vm = new RootViewModel({ platform, navigation, urlRouter, features });
  await vm.load();
  const view = new RootView(vm);
  app.appendChild(view.mount());
  window.__hydrogen = { vm, platform };
  document.body.setAttribute("data-ready", "1");
}

main().catch((e) => {
  document.body.setAttribute("data-error", String((e && e.stack) || e));
  console.error(e);
});
