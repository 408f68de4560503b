// i18n.js - the two languages of the web app, English and Arabic.
//
// Every string a user can see or hear comes from t(key). Pages register their
// strings with addStrings({en: {...}, ar: {...}}) and mark static markup with
// data-i18n attributes, which applyTranslations() fills in:
//
//   <h1 data-i18n="patient.title"></h1>                        → textContent
//   <button data-i18n-aria-label="patient.mute">               → aria-label
//   data-i18n-placeholder, data-i18n-title, data-i18n-alt      → those attributes
//
// setLang() switches the whole document: <html lang> and dir (rtl for Arabic),
// every marked element, and whatever the onLangChange() listeners redraw.

const STORAGE_KEY = 'tabib.lang';
export const LANGS = ['en', 'ar'];

const dicts = { en: Object.create(null), ar: Object.create(null) };
const listeners = new Set();
const warned = new Set();
let current = null;

/** Merges {en: {key: text}, ar: {key: text}} into the dictionaries. */
export function addStrings(dict) {
  for (const lang of LANGS) Object.assign(dicts[lang], dict?.[lang] ?? {});
}

/**
 * The text of `key` in the current language, with {name} placeholders replaced from `vars`.
 * Falls back to English, then to the key itself (warning once per key).
 */
export function t(key, vars = {}) {
  const lang = getLang();
  let text = dicts[lang][key];
  if (text === undefined) {
    text = dicts.en[key];
    if (!warned.has(`${lang}:${key}`)) {
      warned.add(`${lang}:${key}`);
      console.warn(`i18n: no ${lang} text for "${key}"`);
    }
    if (text === undefined) return key;
  }
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** True when `key` has a text (in the current language or English). */
export function hasString(key) {
  return key in dicts[getLang()] || key in dicts.en;
}

function readStored() {
  try {
    const v = localStorage.getItem(STORAGE_KEY);
    return LANGS.includes(v) ? v : null;
  } catch {
    return null; // storage disabled: the choice lasts for this page only
  }
}

/** 'en' or 'ar': the remembered choice, else the browser's language, else English. */
export function getLang() {
  if (!current) {
    const nav = (navigator.languages?.[0] ?? navigator.language ?? '').toLowerCase();
    current = readStored() ?? (nav.startsWith('ar') ? 'ar' : 'en');
  }
  return current;
}

/** The writing direction of a language. */
export function dirOf(lang = getLang()) {
  return lang === 'ar' ? 'rtl' : 'ltr';
}

/** Switches language: remembers it, sets <html lang dir>, re-translates, tells the listeners. */
export function setLang(lang) {
  if (!LANGS.includes(lang)) throw new Error(`unknown language ${lang}`);
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* not remembered, still switched */
  }
  applyLang();
  for (const fn of listeners) {
    try {
      fn(lang);
    } catch (err) {
      console.error('i18n: a language listener failed', err);
    }
  }
}

/** Sets <html lang dir> to the current language and translates the document. */
function applyLang() {
  const root = document.documentElement;
  root.lang = getLang();
  root.dir = dirOf();
  applyTranslations(document);
}

const ATTRS = [
  ['i18nAriaLabel', 'aria-label'],
  ['i18nPlaceholder', 'placeholder'],
  ['i18nTitle', 'title'],
  ['i18nAlt', 'alt'],
];

/**
 * Fills the elements under `root` marked with data-i18n (textContent) and data-i18n-aria-label,
 * -placeholder, -title, -alt (those attributes). A data-i18n-vars attribute holding JSON
 * supplies placeholder values.
 */
export function applyTranslations(root = document) {
  translate(root, false);
}

/** applyTranslations(); `quiet` leaves unknown keys alone without a warning (the first pass). */
function translate(root, quiet) {
  const sel = '[data-i18n],[data-i18n-aria-label],[data-i18n-placeholder],[data-i18n-title],[data-i18n-alt]';
  const nodes = [...root.querySelectorAll(sel)];
  if (root.nodeType === 1 && root.matches(sel)) nodes.unshift(root);
  for (const el of nodes) {
    let vars = {};
    if (el.dataset.i18nVars) {
      try {
        vars = JSON.parse(el.dataset.i18nVars);
      } catch {
        /* ignore a malformed attribute: the placeholders stay visible */
      }
    }
    // An unknown key leaves the markup's own text (English fallback) in place.
    const text = (key) => (quiet && !hasString(key) ? null : t(key, vars));
    if (el.dataset.i18n) {
      const v = text(el.dataset.i18n);
      if (v !== null) el.textContent = v;
    }
    for (const [data, attr] of ATTRS) {
      if (!el.dataset[data]) continue;
      const v = text(el.dataset[data]);
      if (v !== null) el.setAttribute(attr, v);
    }
  }
}

/** Calls fn(lang) after every setLang(). Returns a function that removes it. */
export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const NATIVE_NAMES = { en: 'English', ar: 'العربية' };

/**
 * Turns `button` into the language switch: it shows the other language, written in that
 * language (and marked with its lang), and switches to it when pressed. Its accessible
 * name is "Change language: العربية" / "تغيير اللغة: English".
 */
export function mountLangSwitch(button) {
  const draw = () => {
    const other = getLang() === 'ar' ? 'en' : 'ar';
    button.textContent = NATIVE_NAMES[other];
    button.lang = other;
    button.dir = dirOf(other);
    // "Change language: العربية": the visible text must be part of the accessible name
    // (WCAG 2.5.3, label in name), so that voice control users can say what they see.
    button.setAttribute('aria-label', `${t('lang.switch')}: ${NATIVE_NAMES[other]}`);
    button.dataset.lang = other;
  };
  if (!button.type) button.type = 'button';
  button.addEventListener('click', () => setLang(button.dataset.lang));
  onLangChange(draw);
  draw();
  return button;
}

/** n in the current language's digits and grouping. */
export function formatNumber(n, options = {}) {
  return new Intl.NumberFormat(getLang(), options).format(n);
}

function unit(n, u, display) {
  return new Intl.NumberFormat(getLang(), { style: 'unit', unit: u, unitDisplay: display }).format(n);
}

/**
 * A duration in words: "42 sec", "5 min", "1 hr 5 min" in English; "٥ دقائق" in Arabic
 * (Arabic's short units are hard to read, so it gets the long ones). Under a minute counts
 * seconds; above, minutes are rounded.
 */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const display = getLang() === 'ar' ? 'long' : 'short';
  if (s < 60) return unit(s, 'second', display);
  const totalMin = Math.round(s / 60);
  const h = Math.floor(totalMin / 60);
  const m = totalMin % 60;
  if (!h) return unit(m, 'minute', display);
  const hours = unit(h, 'hour', display);
  if (!m) return hours;
  const mins = unit(m, 'minute', display);
  // "1 hr 5 min" / "ساعة واحدة و٥ دقائق": a list in the language's own way.
  try {
    return new Intl.ListFormat(getLang(), { style: 'narrow', type: 'unit' }).format([hours, mins]);
  } catch {
    return `${hours} ${mins}`;
  }
}

/** A clock time (hours and minutes) in the current language. */
export function formatTime(date) {
  return new Intl.DateTimeFormat(getLang(), { hour: 'numeric', minute: '2-digit' }).format(date);
}

// The document follows the language from the first import on: <html lang dir> are right
// before any page code draws, so there is no flash of the wrong direction. The marked
// elements are translated once the page's modules have registered their strings (keys
// not registered by then are left for the page's own applyTranslations()).
if (typeof document !== 'undefined') {
  document.documentElement.lang = getLang();
  document.documentElement.dir = dirOf();
  const first = () => translate(document, true);
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', first, { once: true });
  } else {
    setTimeout(first, 0);
  }
}
