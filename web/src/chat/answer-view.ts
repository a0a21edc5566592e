/**
 * One answer's text rendered as Markdown while it streams. A top-level block that another block follows is
 * finished (CommonMark closes it when the next one starts): it is rendered once, appended, and never touched
 * again, so a finished code block, its Copy button or a selection in it stay put under the user. Only the last
 * block (still being written: an open code fence runs to the end) is parsed and rendered again on each piece,
 * and its element replaced only when its HTML changed, so an update costs the size of the last block, not of
 * the whole answer. One difference with rendering the whole text at once: a reference-style link (`[a]` with
 * `[a]: https://…` below) resolves only in blocks after its definition.
 */
import { decorateCodeBlocks } from './code-block';
import type { Markdown, References } from './markdown';

export interface AnswerView {
  el: HTMLElement;
  /** Shows `text` (usually the previous text with more appended). */
  update(text: string): void;
}

/** The offset of line `line` in `src` (its length when there are fewer lines). */
function lineOffset(src: string, line: number): number {
  let at = 0;
  for (let i = 0; i < line; i++) {
    const nl = src.indexOf('\n', at);
    if (nl < 0) return src.length;
    at = nl + 1;
  }
  return at;
}

/**
 * markdown-it's HTML for one block as an element, not yet in the page. A <template> parses it inertly (no
 * script runs, nothing loads); markdown-it escaped the source, so it holds only the elements Markdown makes.
 */
function toElement(html: string): Element | null {
  const t = document.createElement('template');
  t.innerHTML = html.trim();
  decorateCodeBlocks(t.content);
  return t.content.firstElementChild;
}

/** How many lines of `src` are complete (end with a newline). */
function completeLines(src: string): number {
  let n = 0;
  for (let at = src.indexOf('\n'); at >= 0; at = src.indexOf('\n', at + 1)) n++;
  return n;
}

export function createAnswerView(md: Markdown, props: { class: string }): AnswerView {
  const el = document.createElement('div');
  el.className = props.class;
  /** The source of the finished blocks, and the link references they define. */
  let done = '';
  let references: References = {};
  /** The blocks after the finished ones, still being written, as last shown (one, or two across a new line). */
  let live: { html: string; el: Element }[] = [];

  /** Shows `htmls` in place of the first live blocks, keeping the element of any block that did not change. */
  function show(htmls: string[]): { html: string; el: Element }[] {
    return htmls.flatMap((html, i) => {
      const old = live[i];
      if (old?.html === html) return [old];
      const next = toElement(html);
      if (old && next) old.el.replaceWith(next);
      else if (old) old.el.remove();
      else if (next) el.append(next);
      return next ? [{ html, el: next }] : [];
    });
  }

  function update(raw: string): void {
    const text = raw.replace(/\r\n?/g, '\n');
    if (!text.startsWith(done)) {
      // Not a continuation (the answer started over): render afresh.
      el.replaceChildren();
      done = '';
      references = {};
      live = [];
    }
    const rest = text.slice(done.length);
    // A copy: a reference still being written must not stick with half its address.
    const blocks = md.blocks(rest, { ...references });
    // CommonMark settles a line's blocks when it reads the line: a block is finished once a complete line has
    // started another after it. A line still being written settles nothing (`2` may yet become `2.`, an item of
    // the list above it).
    const complete = completeLines(rest);
    let cut = blocks.length - 1;
    while (cut > 0 && blocks[cut].startLine >= complete) cut--;
    if (cut > 0) {
      // Render the finished blocks once more, with the references they define, and never again.
      const finished = rest.slice(0, lineOffset(rest, blocks[cut].startLine));
      const shown = show(md.blocks(finished, references).map((b) => b.render()));
      live = live.slice(shown.length);
      done += finished;
      update(text);
      return;
    }
    const shown = show(blocks.map((b) => b.render()));
    live.slice(shown.length).forEach((b) => b.el.remove());
    live = shown;
  }

  return { el, update };
}
