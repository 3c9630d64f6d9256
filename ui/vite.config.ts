import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// `base: './'`: the node serves the app under `/<process id>/`, so every asset URL is relative.
export default defineConfig({
  base: './',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 600 },
  test: { include: ['tests/**/*.test.ts'], environment: 'node' },
});
