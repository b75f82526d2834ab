// Fixed output names (no content hashes): the server embeds dist/index.html, dist/app.js
// and dist/app.css by name (crates/server/src/web.rs).
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    cssCodeSplit: false,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: "app.js",
        chunkFileNames: "app-[name].js",
        assetFileNames: "app[extname]",
        inlineDynamicImports: true,
      },
    },
  },
});
