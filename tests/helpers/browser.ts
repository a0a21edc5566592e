/**
 * Headless Chromium from Debian's package (/usr/bin/chromium), driven by playwright-core: no browser is
 * downloaded. Every page records the requests it makes, the errors it throws and what its Content-Security-Policy
 * refused, so a test can prove the page reached nothing but the server, and saves screenshots under
 * test-artifacts/browser.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from './server';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = path.join(ROOT, 'test-artifacts/browser');

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    // Without the background-networking flags Chromium calls home, and the closed network refuses it.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export interface TrackedPage {
  page: Page;
  context: BrowserContext;
  /** Every URL the page requested (documents, scripts, fetches, WebSockets). */
  requests: string[];
  /** Uncaught exceptions in the page. */
  errors: string[];
  /** What the page's Content-Security-Policy refused (Chromium reports each refusal on the console). */
  refusedByCsp: string[];
  /** Payloads of every WebSocket frame the page received. */
  framesReceived: string[];
}

export async function trackedPage(browser: Browser, options: { context?: BrowserContext; width?: number; height?: number } = {}): Promise<TrackedPage> {
  const context = options.context ?? (await browser.newContext({ viewport: { width: options.width ?? 1100, height: options.height ?? 800 } }));
  const page = await context.newPage();
  const tracked: TrackedPage = { page, context, requests: [], errors: [], refusedByCsp: [], framesReceived: [] };
  page.on('request', (r) => tracked.requests.push(r.url()));
  page.on('pageerror', (e) => tracked.errors.push(String(e?.stack ?? e)));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) tracked.refusedByCsp.push(m.text());
  });
  page.on('websocket', (ws) => {
    tracked.requests.push(ws.url());
    ws.on('framereceived', (f) => tracked.framesReceived.push(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8')));
  });
  return tracked;
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}
