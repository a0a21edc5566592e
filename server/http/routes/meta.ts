/**
 * `GET /v1/meta`, public: what the chat page must know before anyone signs in (whether dev login is on,
 * whether a model is connected, how long a message may be). Nothing here helps an anonymous caller beyond that.
 */
import { Router } from 'express';
import type { PageMeta as PageMetaView } from '../../../protocol/views.js';

export interface PageMeta {
  devLogin: boolean;
  llmConfigured: boolean;
  maxInputBytes: number;
}

export function metaRoutes(meta: PageMeta): Router {
  const r = Router();
  r.get('/v1/meta', (_req, res) => {
    res.json({ dev_login: meta.devLogin, llm_configured: meta.llmConfigured, max_input_bytes: meta.maxInputBytes } satisfies PageMetaView);
  });
  return r;
}
