/**
 * A code block of an answer: its language (the fence's info string) above it, and a Copy button that puts
 * the code on the clipboard. Where the Clipboard API is missing (a page served over plain HTTP to another
 * host is not a secure context), the button selects the code instead, for the user to copy.
 */
import { h } from '../shared/dom';

/** How long the button says "Copied" before it reads "Copy" again. */
const CONFIRM_MS = 2000;

function codeBlock(pre: HTMLPreElement): void {
  const code = pre.querySelector('code') ?? pre;
  const lang = /(?:^|\s)language-(\S+)/.exec(code.className)?.[1] ?? '';
  const label = lang ? `Copy the ${lang} code` : 'Copy the code';
  const copy = h('button', { type: 'button', class: 'quiet copy', 'aria-label': label, text: 'Copy' });
  const say = (text: string) => {
    copy.textContent = text;
    copy.setAttribute('aria-label', text);
    setTimeout(() => {
      copy.textContent = 'Copy';
      copy.setAttribute('aria-label', label);
    }, CONFIRM_MS);
  };
  const select = () => {
    getSelection()?.selectAllChildren(code);
    say('Selected: press Ctrl+C');
  };
  copy.addEventListener('click', () => {
    const text = code.textContent ?? '';
    if (!navigator.clipboard) return select();
    navigator.clipboard.writeText(text).then(() => say('Copied'), select);
  });
  const wrapper = h('div', { class: 'code-block' }, h('div', { class: 'code-head' }, lang ? h('span', { class: 'code-lang', text: lang }) : null, copy));
  pre.replaceWith(wrapper);
  wrapper.appendChild(pre);
}

/** Gives every code block in `fragment` its header. */
export function decorateCodeBlocks(fragment: DocumentFragment): void {
  fragment.querySelectorAll('pre').forEach(codeBlock);
}
