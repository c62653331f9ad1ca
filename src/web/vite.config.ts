import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * Builds the dashboard into `dist/web` (git-ignored), served by Ion at `/ui`. `npm install`
 * runs this through the `prepare` script, so the README's two commands stay the whole set-up.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/ui/',
  plugins: [react()],
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../../dist/web', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 2500,
    // No inline scripts or eval: the page runs under a strict Content-Security-Policy.
    modulePreload: { polyfill: false },
  },
});
