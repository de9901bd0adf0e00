// keyway portal: the one first-party script of the portal pages.
//
// The pages are rendered on the server; this script wires their buttons and
// forms (by data-action / data-form attributes, never inline handlers, which
// the CSP forbids), runs the WebAuthn ceremonies, and calls keyway's JSON
// endpoints with the CSRF header. Secrets it receives (a new API key,
// recovery codes, one-time links) are written into the page once and never
// stored or put into a URL.
'use strict';

(() => {
  const PORTAL = '/.keyway/portal/';
  const AUTH = '/.keyway/auth/';
  const STEP_UP = 'urn:keyway:problem:step-up-required';
  const FLASH = 'keyway.flash';

  // ---- messages (the aria-live region) ----

  function say(msg, kind) {
    const el = document.getElementById('status');
    if (!el) return;
    el.className = 'status' + (kind ? ' ' + kind : '');
    el.textContent = msg || '';
  }

  // flash keeps a message for the next page this tab shows.
  function flash(msg, kind) {
    try { sessionStorage.setItem(FLASH, JSON.stringify({ msg, kind })); } catch (_) { /* private mode */ }
  }

  function showFlash() {
    try {
      const f = sessionStorage.getItem(FLASH);
      if (!f) return;
      sessionStorage.removeItem(FLASH);
      const { msg, kind } = JSON.parse(f);
      say(msg, kind);
    } catch (_) { /* ignore */ }
  }

  // ---- the JSON API ----

  class Problem extends Error {
    constructor(body, status) {
      super((body && (body.detail || body.title)) || 'The request failed (HTTP ' + status + ').');
      this.type = body && body.type;
      this.status = status;
    }
  }

  async function api(method, url, body) {
    const init = {
      method,
      headers: { 'X-Keyway-CSRF': '1', 'Content-Type': 'application/json', Accept: 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store',
    };
    if (body !== undefined) init.body = JSON.stringify(body);
    let res;
    try {
      res = await fetch(url, init);
    } catch (_) {
      throw new Error('keyway cannot be reached. Check your connection and try again.');
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!res.ok) throw new Problem(data, res.status);
    return data;
  }

  // ---- WebAuthn ----

  function passkeysWork() {
    return !!(window.PublicKeyCredential &&
      typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function' &&
      typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function');
  }

  function needPasskeys() {
    if (!passkeysWork()) {
      throw new Error('This browser cannot use passkeys here. Try a current Chrome, Edge, Safari or Firefox.');
    }
  }

  // createPasskey registers a passkey: a new account (with username), or one
  // more for the signed-in person.
  async function createPasskey(beginBody) {
    needPasskeys();
    const opts = await api('POST', AUTH + 'passkey/register/begin', beginBody);
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey);
    const cred = await navigator.credentials.create({ publicKey });
    return api('POST', AUTH + 'passkey/register/finish', cred.toJSON());
  }

  // assert runs a get() ceremony between a begin and a finish endpoint.
  async function assert(kind, beginBody, extra) {
    needPasskeys();
    const opts = await api('POST', AUTH + kind + '/begin', beginBody);
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey);
    const cred = await navigator.credentials.get(Object.assign({ publicKey }, extra || {}));
    return api('POST', AUTH + kind + '/finish', cred.toJSON());
  }

  function stepUp() {
    say('Confirm it is you with your passkey…');
    return assert('stepup', {});
  }

  // withStepUp runs fn; if keyway asks for a fresh user-verified assertion,
  // it runs the step-up ceremony and tries fn once more.
  async function withStepUp(fn) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof Problem) || e.type !== STEP_UP) throw e;
      await stepUp();
      say('Working…');
      return fn();
    }
  }

  function describe(e) {
    if (e instanceof Problem) return e.message;
    switch (e && e.name) {
      case 'NotAllowedError':
        return 'The passkey request was cancelled or timed out. Try again when you are ready.';
      case 'InvalidStateError':
        return 'This device already holds a passkey for this account. Use another device or security key.';
      case 'AbortError':
        return 'The request was cancelled.';
      case 'SecurityError':
        return 'Passkeys are not allowed on this address.';
      case 'NotSupportedError':
        return 'This device cannot make a passkey of the kind keyway needs.';
      default:
        return (e && e.message) || 'Something went wrong.';
    }
  }

  // ---- navigation ----

  // go opens next (a portal page) or, without one, reloads this page.
  function go(next, msg) {
    if (msg) flash(msg, 'ok');
    if (next && next.startsWith(PORTAL) && !next.startsWith('//')) {
      location.assign(next);
    } else {
      location.reload();
    }
  }

  // ---- one-time secrets in the page ----

  function showCodes(codes) {
    const panel = document.querySelector('[data-codes]');
    if (!panel) return;
    const list = panel.querySelector('[data-codes-list]');
    list.replaceChildren(...codes.map((c) => {
      const li = document.createElement('li');
      li.textContent = c;
      return li;
    }));
    document.querySelectorAll('form[data-form="signup"]').forEach((f) => { f.hidden = true; });
    panel.hidden = false;
    say('');
    panel.focus();
  }

  function showSecret(title, value, note) {
    const panel = document.querySelector('[data-secret]');
    if (!panel) return;
    panel.querySelector('[data-secret-title]').textContent = title;
    panel.querySelector('[data-secret-value]').textContent = value;
    if (note) panel.querySelector('[data-secret-note]').textContent = note;
    panel.hidden = false;
    say('');
    panel.focus();
  }

  async function copy(btn) {
    const src = document.querySelector(btn.dataset.copyFrom);
    if (!src) return;
    const text = src.matches('ol, ul')
      ? Array.from(src.children, (li) => li.textContent).join('\n')
      : src.textContent;
    try {
      await navigator.clipboard.writeText(text);
      say('Copied.', 'ok');
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(src);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      say('Selected: press Ctrl+C or ⌘C to copy.', 'ok');
    }
  }

  // ---- one-time link tokens from the URL fragment ----

  // The fragment never reaches a server; once read, it leaves the address
  // bar and the history too.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (location.hash && (document.querySelector('[data-fragment]') || fragment.has('token') || fragment.has('invite'))) {
    history.replaceState(null, '', location.pathname + location.search);
  }

  function token(form) {
    return fragment.get(form.dataset.fragment) || '';
  }

  // ---- sign-in, with autofill (conditional mediation) when offered ----

  let conditional = null; // { ctl: AbortController, done: Promise }

  async function conditionalAvailable() {
    if (!passkeysWork()) return false;
    try {
      if (typeof PublicKeyCredential.getClientCapabilities === 'function') {
        const caps = await PublicKeyCredential.getClientCapabilities();
        return !!caps.conditionalGet;
      }
      if (typeof PublicKeyCredential.isConditionalMediationAvailable === 'function') {
        return await PublicKeyCredential.isConditionalMediationAvailable();
      }
    } catch (_) { /* not offered */ }
    return false;
  }

  function startConditional(form) {
    const ctl = new AbortController();
    let timer = 0;
    // conditional is set at once, so that a click that comes before the
    // capability check has answered still aborts this request first.
    const done = (async () => {
      if (!(await conditionalAvailable()) || ctl.signal.aborted) return;
      // A ceremony lives five minutes: start a new one before it expires.
      timer = setTimeout(() => ctl.abort('expired'), 270000);
      try {
        await assert('passkey/login', {}, { mediation: 'conditional', signal: ctl.signal });
        go(form.dataset.next, 'Signed in.');
      } catch (e) {
        if (ctl.signal.aborted) {
          if (ctl.signal.reason === 'expired' && conditional && conditional.ctl === ctl) startConditional(form);
          return;
        }
        say(describe(e), 'error');
      } finally {
        clearTimeout(timer);
      }
    })();
    conditional = { ctl, done };
  }

  // stopConditional aborts a pending autofill request and waits for it to
  // settle: a browser allows one WebAuthn request at a time.
  async function stopConditional() {
    const c = conditional;
    conditional = null;
    if (!c) return;
    c.ctl.abort('modal');
    await c.done;
  }

  // ---- forms ----

  const forms = {
    async signin(form) {
      await stopConditional();
      const username = form.elements.username.value.trim();
      try {
        await assert('passkey/login', { username });
      } catch (e) {
        startConditional(form);
        throw e;
      }
      go(form.dataset.next, 'Signed in.');
    },

    async signup(form) {
      const invite = token(form);
      if (!invite && form.hasAttribute('data-token-required')) {
        throw new Error('This link is incomplete: open the whole link keyway printed.');
      }
      const res = await createPasskey({
        username: form.elements.username.value.trim(),
        display_name: form.elements.display_name.value.trim(),
        invite,
      });
      if (res && res.recovery_codes) {
        showCodes(res.recovery_codes);
      } else {
        go(PORTAL + 'account', 'Welcome.');
      }
    },

    async register(form) {
      const name = form.elements.name ? form.elements.name.value.trim() : '';
      await withStepUp(() => createPasskey({ name }));
      go(form.dataset.next, 'The passkey is registered.');
    },

    async enrol(form) {
      const tok = token(form);
      if (!tok) throw new Error('This link is incomplete: open the whole link you were sent.');
      await api('POST', AUTH + 'enrol', { token: tok });
      await registerAfterRedeem(form);
    },

    async recover(form) {
      await api('POST', AUTH + 'recovery', {
        username: form.elements.username.value.trim(),
        code: form.elements.code.value.trim(),
      });
      form.elements.code.value = '';
      await registerAfterRedeem(form);
    },

    async rename(form) {
      await api('PATCH', form.dataset.url, { name: form.elements.name.value.trim() });
      go('', 'The passkey is renamed.');
    },

    async 'create-key'(form) {
      const el = form.elements;
      const body = {
        name: el.name.value.trim(),
        scopes: el.scopes.value.split(/[\s,]+/).filter(Boolean),
        expires_in: el.expires_in.value,
        env: el.env.value,
      };
      const rate = el.rate.value.trim();
      if (rate) body.rate = { rate };
      const res = await withStepUp(() => api('POST', '/.keyway/api-keys', body));
      form.reset();
      const details = form.closest('details');
      if (details) details.open = false;
      showSecret('Your new API key “' + res.name + '”', res.key,
        'Copy it now: it is shown only this once, and keyway keeps only a hash of it. Send it in the Authorization: Bearer header.');
    },

    async rotate(form) {
      const res = await withStepUp(() => api('POST', form.dataset.url, { overlap: form.elements.overlap.value }));
      showSecret('The new secret of “' + res.name + '”', res.key,
        'Copy it now: it is shown only this once. The old secret stops working when its overlap ends.');
    },

    async roles(form) {
      const roles = form.elements.roles.value.split(/[\s,]+/).filter((r) => r !== '');
      await withStepUp(() => api('PUT', form.dataset.url, { roles }));
      go(null, 'Roles saved. They apply from the person’s next request.');
    },

    async erase(form) {
      await withStepUp(() => api('POST', AUTH + 'account/erase', { confirm: form.elements.confirm.value.trim() }));
      go(PORTAL + 'signin', 'Your account is erased.');
    },

    async invite(form) {
      const res = await withStepUp(() => api('POST', '/.keyway/admin/invites', { role: form.elements.role.value }));
      showSecret('Invitation link', res.url,
        'Send it over a channel you trust. It works once, for ' + res.expires_in + '.');
    },
  };

  // registerAfterRedeem registers a passkey once a recovery code or
  // enrolment link gave this browser a restricted session. If that fails
  // (say, the prompt was cancelled), the reloaded page offers it again.
  async function registerAfterRedeem(form) {
    try {
      await createPasskey({ name: form.elements.name ? form.elements.name.value.trim() : '' });
    } catch (e) {
      flash(describe(e), 'error');
      location.reload();
      return;
    }
    go(form.dataset.next, 'The passkey is registered. You are signed in.');
  }

  // ---- buttons ----

  const actions = {
    async signout() {
      await api('POST', AUTH + 'logout');
      go(PORTAL + 'signin', 'You are signed out.');
    },

    async call(btn) {
      await withStepUp(() => api(btn.dataset.method || 'POST', btn.dataset.url));
      go(btn.dataset.next, 'Done.');
    },

    async export() {
      const data = await withStepUp(() => api('POST', AUTH + 'account/export'));
      const a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
      a.download = 'keyway-account.json';
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      say('Your data is in keyway-account.json: ' + data.passkeys.length + ' passkey(s), ' +
        data.sessions.length + ' session(s), ' + data.api_keys.length + ' API key(s), ' + data.audit.length + ' audit event(s).');
    },

    async codes() {
      const res = await withStepUp(() => api('POST', AUTH + 'recovery/codes'));
      showCodes(res.recovery_codes);
    },

    async link(btn) {
      const res = await withStepUp(() => api('POST', btn.dataset.url));
      showSecret(btn.dataset.title || 'Link', res.url,
        'Send it over a channel you trust. It works once, for ' + res.expires_in + '.');
    },

    async stepup() {
      await stepUp();
      go('', 'Confirmed.');
    },

    async continue(btn) {
      go(btn.dataset.next);
    },

    async reload() {
      location.reload();
    },

    copy,
  };

  // busy disables the controls of an action while it runs.
  async function busy(controls, fn) {
    controls.forEach((c) => { c.disabled = true; c.setAttribute('aria-busy', 'true'); });
    say('Working…');
    try {
      await fn();
    } catch (e) {
      say(describe(e), 'error');
    } finally {
      controls.forEach((c) => { c.disabled = false; c.removeAttribute('aria-busy'); });
    }
  }

  document.addEventListener('submit', (ev) => {
    const form = ev.target.closest('form[data-form]');
    if (!form || !forms[form.dataset.form]) return;
    ev.preventDefault();
    busy(Array.from(form.querySelectorAll('button')), () => forms[form.dataset.form](form));
  });

  document.addEventListener('click', (ev) => {
    const btn = ev.target.closest('button[data-action]');
    if (!btn || !actions[btn.dataset.action]) return;
    ev.preventDefault();
    if (btn.dataset.action === 'copy') {
      copy(btn);
      return;
    }
    busy([btn], () => actions[btn.dataset.action](btn));
  });

  // ---- on load ----

  // Times are rendered in UTC; show them in the reader's zone.
  document.querySelectorAll('time[datetime]').forEach((el) => {
    const d = new Date(el.dateTime);
    if (Number.isNaN(d.getTime())) return;
    el.title = el.textContent;
    el.textContent = d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  });

  document.querySelectorAll('form[data-fragment]').forEach((form) => {
    if (token(form)) {
      document.querySelectorAll('[data-invited]').forEach((el) => { el.hidden = false; });
      document.querySelectorAll('[data-uninvited]').forEach((el) => { el.hidden = true; });
    }
  });

  if (!passkeysWork() && document.querySelector('form[data-form], button[data-action="stepup"]')) {
    say('This browser cannot use passkeys here. Try a current Chrome, Edge, Safari or Firefox.', 'error');
  }

  showFlash();

  const signin = document.querySelector('form[data-form="signin"]');
  if (signin) startConditional(signin);
})();
