/**
 * The chat page (`/`) and the operations view (`/ops`): static files that `npm run build` bundles from
 * web/src into web/dist. Every response carries a strict Content-Security-Policy, so the page can load
 * and connect to nothing but this server (no CDN, no inline script, no third-party request).
 */
import fs from 'node:fs';
import path from 'node:path';
import express, { Router, type Response } from 'express';

/** 'self' also covers ws:// and wss:// to this origin (CSP level 3), so socket.io needs nothing wider. */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

function secure(res: Response): void {
  res.setHeader('Content-Security-Policy', PAGE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  // A page of another origin that opens this one (window.open) keeps no handle on it: no navigating it away, no
  // counting its frames, no postMessage; and no other origin may embed its scripts or styles.
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  // The files are not content-hashed, so browsers revalidate (cheap: ETag) instead of keeping a stale build.
  res.setHeader('Cache-Control', 'no-cache');
}

export function webRoutes(deps: { dir: string }): Router {
  const r = Router();
  const page = (file: string) => (_req: unknown, res: Response) => {
    secure(res);
    if (!fs.existsSync(path.join(deps.dir, file))) {
      // A build without the page (tsc alone) still serves the API; say how to get the page.
      res.status(503).type('text/plain').send('The chat page is not built: run `npm run build` (it bundles web/src into web/dist).\n');
      return;
    }
    res.sendFile(file, { root: deps.dir });
  };
  r.get('/', page('index.html'));
  r.get('/ops', page('ops.html'));
  r.use(
    '/assets',
    (_req, res, next) => {
      secure(res);
      next();
    },
    express.static(path.join(deps.dir, 'assets'), { index: false, redirect: false, dotfiles: 'deny', cacheControl: false }),
  );
  return r;
}
