/**
 * Markdown as the chat page renders it: markdown-it (CommonMark with GitHub tables and strikethrough) in its
 * safe mode. `html: false` escapes every raw `<`, so markup in a model's answer is shown as text, never
 * interpreted; links go only to http(s) and mailto (anything else, `javascript:` and `data:` included, stays
 * text) and open in a new tab without an opener; images become links, so an answer cannot make the page load
 * anything (a tracking pixel, or a request the Content-Security-Policy would refuse). Nothing in the output
 * carries a style attribute either: the CSP refuses inline style.
 *
 * The source is cut into top-level blocks (a paragraph, a list, a table, a code fence…), each rendered on its
 * own, so a streaming answer re-renders only the block still being written (answer-view.ts).
 */
import MarkdownIt, { type Env, type RendererRule, type Token } from 'markdown-it';

/** Link reference definitions (`[label]: url`), keyed as markdown-it keys them. */
export type References = NonNullable<Env['references']>;

export interface Block {
  /** The source line the block starts at. */
  startLine: number;
  /** The block's HTML (one element), safe to parse: markdown-it escaped every character of the source. */
  render(): string;
}

export interface Markdown {
  /** The top-level blocks of `src`, given the references defined before it; adds those `src` defines. */
  blocks(src: string, references: References): Block[];
}

const SAFE_URL = /^(https?:|mailto:)/;

export function createMarkdown(): Markdown {
  const md = new MarkdownIt({ html: false, linkify: true, breaks: true, typographer: false });
  md.validateLink = (url) => SAFE_URL.test(url.trim().toLowerCase());
  const esc = md.utils.escapeHtml;
  const newTab = (token: Token) => {
    token.attrSet('target', '_blank');
    token.attrSet('rel', 'noopener noreferrer');
  };
  md.renderer.rules.link_open = (tokens, idx, options, _env, self) => {
    newTab(tokens[idx]);
    return self.renderToken(tokens, idx, options);
  };
  // markdown-it aligns table columns with a style attribute, which the page's CSP (no inline style) refuses.
  const alignByClass: RendererRule = (tokens, idx, options, _env, self) => {
    const align = /^text-align:(left|center|right)$/.exec(String(tokens[idx].attrGet('style') ?? ''))?.[1];
    tokens[idx].attrs = align ? [['class', `align-${align}`]] : null;
    return self.renderToken(tokens, idx, options);
  };
  md.renderer.rules.th_open = alignByClass;
  md.renderer.rules.td_open = alignByClass;
  // The image's address passed validateLink like any link's; its alt text is the link's text.
  md.renderer.rules.image = (tokens, idx, options, env, self) => {
    const src = String(tokens[idx].attrGet('src') ?? '');
    const alt = self.renderInlineAsText(tokens[idx].children ?? [], options, env) || src;
    return `<a href="${esc(src)}" class="image-link" target="_blank" rel="noopener noreferrer">${esc(alt)}</a>`;
  };

  return {
    blocks(src, references) {
      const env: Env = { references };
      const tokens = md.parse(src, env);
      const blocks: Block[] = [];
      // A top-level block is one token at level 0 (a fence, a rule) or an open token at level 0 up to its close.
      for (let i = 0; i < tokens.length; ) {
        let end = i;
        if (tokens[i].nesting === 1) while (!(tokens[end].level === 0 && tokens[end].nesting === -1)) end++;
        const slice = tokens.slice(i, end + 1);
        blocks.push({ startLine: tokens[i].map?.[0] ?? 0, render: () => md.renderer.render(slice, md.options, env) });
        i = end + 1;
      }
      return blocks;
    },
  };
}
