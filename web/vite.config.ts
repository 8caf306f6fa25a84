import { defineConfig } from "vite";

// The built app is embedded in the `casescope` binary and served by the gateway at `/`
// under a strict Content-Security-Policy (no inline script or style): everything the
// page needs is an external, hashed file under /assets/.
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
  },
  server: {
    // `npm run dev`: the gateway of `casescope serve` answers the gRPC-web calls.
    proxy: {
      "/casescope.": "http://127.0.0.1:7700",
    },
  },
});
