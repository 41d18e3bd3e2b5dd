/// <reference types="vitest/config" />
// Builds the dashboard into dist/, which kanade-backend embeds (crates/kanade-backend/src/web.rs).
// `npm run dev` serves it with hot reload and forwards the API to a running backend (the sandbox's by default).
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const backend = process.env.KANADE_BACKEND_URL ?? "http://127.0.0.1:8081";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
  server: { proxy: { "/api": { target: backend, changeOrigin: false }, "/health": backend } },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
