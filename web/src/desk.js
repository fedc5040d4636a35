// The front desk page: a staff member logs in with their own name and password (the session is
// an HttpOnly cookie the page never sees), then the page lists the live calls of their accounts
// every second (the web app reads them from LiveKit's server API), highlights the ones where the
// agent asked for a person, and takes a call: the page asks for a staff token for that room and
// joins it with LiveKit's JavaScript client and the microphone; the agent sees the staff
// participant and steps back.
import { Room, RoomEvent, Track } from 'livekit-client';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let account = params.get('account') || '';
// What the page knows, for people (the DOM) and for tests (window.firstwordDesk).
const desk = { open: false, who: '', accounts: [], calls: [], records: [], voiceMessages: [], history: [], unanswered: [], onCall: null, callState: '', heard: 0, error: '', alerted: [] };
window.firstwordDesk = desk;
// One second: the calls live in LiveKit, read through its server API (no push of attribute
// changes without joining every room); a second is well inside a person's reaction time.
const POLL_MS = 1000;
// The call history changes when a call ends, and is read from files: every 10th poll.
const HISTORY_EVERY = 10;
let timer = null;
let polls = 0;

async function request(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    credentials: 'same-origin',
    headers: { ...(options.headers || {}), 'content-type': 'application/json' },
  });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  return { response, body };
}

async function api(path, options = {}) {
  const { response, body } = await request(path, options);
  if (response.status === 401) {
    stop(body.error);
    throw new Error(body.error);
  }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function stop(message) {
  clearInterval(timer);
  timer = null;
  desk.open = false;
  desk.error = message;
  $('desk').hidden = true;
  $('login').hidden = false;
  $('error').textContent = message;
  document.body.dataset.state = 'refused';
}

const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString();
const since = (seconds, now) => {
  const s = Math.max(0, Math.round(now - seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// A new handoff request: a browser notification and a short chime, where the staff member
// allowed notifications (the "Notify me" button asks; browsers let only a click ask). The
// first list after logging in alerts nothing: those requests are on the screen already.
const alerted = new Set();
let listed = false;
function alertNewHandoffs(calls) {
  for (const call of calls) {
    if (call.state !== 'handoff requested' || alerted.has(call.room + call.handoff.at)) continue;
    alerted.add(call.room + call.handoff.at);
    if (!listed) continue;
    desk.alerted.push(call.room);
    chime();
    if (window.Notification && Notification.permission === 'granted') {
      const who = call.caller.number || call.caller.name || call.caller.identity;
      new Notification(`A caller asks for a person (${call.account || 'call'})`, {
        body: `${who}: ${call.handoff.question || call.handoff.reason}`,
        tag: call.room,
      });
    }
  }
  listed = true;
}

function chime() {
  try {
    const context = new AudioContext();
    const tone = context.createOscillator();
    const gain = context.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.2, context.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, context.currentTime + 0.4);
    tone.connect(gain).connect(context.destination);
    tone.start();
    tone.stop(context.currentTime + 0.4);
    tone.onended = () => context.close();
  } catch {
    // No audio output (or none allowed yet): the notification and the highlight remain.
  }
}

function render(calls, now) {
  const body = $('calls');
  body.replaceChildren();
  if (!calls.length) body.append(el('tr', {}, el('td', { colSpan: 5, className: 'muted', textContent: 'No live calls.' })));
  for (const call of calls) {
    const row = el('tr', { className: call.state === 'handoff requested' ? 'handoff' : call.state === 'taken' ? 'taken' : '' });
    row.dataset.room = call.room;
    const caller = call.caller.number || call.caller.name || call.caller.identity;
    const state = el('td', {}, el('div', { className: 'state', textContent: call.state }));
    if (call.handoff.reason) state.append(el('div', { className: 'reason', textContent: `Asked for a person: ${call.handoff.reason}` }));
    if (call.handoff.question) state.append(el('div', { className: 'line', textContent: `“${call.handoff.question}”` }));
    const lines = el('td', {}, ...call.transcript.slice(-6).map((l) => el('div', { className: 'line' }, el('b', { textContent: `${l.who}: ` }), l.text)));
    const take = el('button', { textContent: 'Take call', disabled: !!desk.onCall || call.staff.length > 0 });
    take.className = 'take';
    take.onclick = () => takeCall(call.room).catch((error) => { $('oncall-state').textContent = `error: ${error.message}`; });
    row.append(
      el('td', {}, el('div', { textContent: caller }), el('div', { className: 'muted', textContent: `${call.account || '?'} · ${call.caller.kind}` })),
      el('td', {}, el('div', { textContent: clock(call.started_at) }), el('div', { className: 'muted', textContent: since(call.started_at, now) })),
      state,
      lines,
      el('td', {}, take),
    );
    body.append(row);
  }
  $('updated').textContent = `· updated ${new Date().toLocaleTimeString()}`;
}

function renderRecords(records) {
  const list = $('messages');
  list.replaceChildren();
  if (!records.length) list.append(el('li', { className: 'muted', textContent: 'No messages yet.' }));
  for (const r of records) {
    const who = r.caller_number || r.caller_identity;
    list.append(el('li', {},
      el('b', { textContent: `${clock(r.requested_at)} · ${who} · ${r.outcome.replace('_', ' ')}` }),
      ` (${r.end}${r.taken_by ? `, ${r.taken_by}` : ''}): `,
      el('span', { textContent: r.question ? `“${r.question}”` : '(no question)' }),
      el('span', { className: 'muted', textContent: ` — ${r.reason}` }),
      ...(r.caller_number ? [' ', callBackButton(r.caller_number)] : [])));
  }
}

// Voice messages left after handoffs nobody took: each with its audio. Redrawn only when the
// list changed, so that a message being played is not cut off by the next poll.
function renderVoiceMessages(messages) {
  const key = (list) => list.map((m) => `${m.id}:${m.done ? 1 : 0}`).join(' ');
  if (key(messages) === key(desk.voiceMessages) && $('voice-messages').childElementCount) return;
  desk.voiceMessages = messages;
  const list = $('voice-messages');
  list.replaceChildren();
  if (!messages.length) list.append(el('li', { className: 'muted', textContent: 'No voice messages.' }));
  for (const m of messages) {
    const who = m.caller_number || (m.contact ? `a web caller: “${m.contact}”` : 'a web caller (no number)');
    list.append(el('li', { className: m.done ? 'done' : '' },
      el('b', { textContent: `${clock(m.recorded_at)} · ${who} · ${Math.round(m.duration_s)} s` }),
      el('span', { className: 'muted', textContent: m.question ? ` — asked “${m.question}”` : '' }),
      el('div', { className: 'line', textContent: m.text ? `“${m.text}”` : '(no transcript)' }),
      el('div', { className: 'muted', textContent: `call ${m.room} (in Recent calls: search its number or words)` }),
      el('audio', { controls: true, preload: 'none', src: m.audio_url }),
      ' ', doneBox(m),
      ...(m.caller_number ? [' ', callBackButton(m.caller_number)] : [])));
  }
}

// "Done": staff mark a message dealt with (or not again); who and when show beside it.
function doneBox(m) {
  const box = el('input', { type: 'checkbox', className: 'done-box', checked: Boolean(m.done) });
  const label = el('label', {}, box, ` done${m.done && m.done_by ? ` (${m.done_by})` : ''}`);
  box.onchange = async () => {
    box.disabled = true;
    try {
      await api('/api/desk/voice-messages/done', {
        method: 'POST',
        body: JSON.stringify({ account, id: m.id, done: box.checked }),
      });
      m.done = box.checked;
      desk.voiceMessages = [];  // redrawn from the next poll's list
    } catch (error) {
      box.checked = !box.checked;
      label.title = error.message;
    } finally {
      box.disabled = false;
    }
  };
  return label;
}

function renderHistory(reply) {
  const calls = $('history');
  calls.replaceChildren();
  if (!reply.calls.length) calls.append(el('li', { className: 'muted', textContent: 'No calls yet.' }));
  for (const c of reply.calls) {
    const who = c.caller_number || c.caller || '?';
    const first = c.ttfw_ms == null ? 'no first word' : `first word ${c.ttfw_ms} ms`;
    const by = c.taken_by ? ` by ${c.taken_by}` : '';
    const handoff = c.handoff ? `, handoff ${c.handoff.replace('_', ' ')}${by}` : '';
    const latency = (t) => (t.latency_ms == null ? '' : ` (${t.latency_ms} ms)`);
    const asked = c.turns.map((t) => `${t.answered ? '' : '✗ '}“${t.question}”${latency(t)}`).join(' ');
    calls.append(el('li', {},
      el('b', { textContent: `${clock(c.started_at)} · ${who} · ${c.caller_kind} · ${Math.round(c.seconds)} s` }),
      el('span', { className: 'muted', textContent: ` — ${c.ended}, ${first}${handoff}` }),
      el('div', { className: 'line', textContent: asked || '(asked nothing)' }),
      ...(c.caller_number ? [callBackButton(c.caller_number)] : [])));
  }
  // Redrawn only when the list changed: a draft being copied stays open.
  const key = reply.unanswered.map((q) => `${q.question}:${q.times}`).join('|');
  const missed = $('unanswered');
  if (key === missed.dataset.key && missed.childElementCount) return;
  missed.dataset.key = key;
  missed.replaceChildren();
  if (!reply.unanswered.length) missed.append(el('li', { className: 'muted', textContent: 'None so far.' }));
  for (const q of reply.unanswered) {
    missed.append(el('li', {}, el('span', { textContent: `“${q.question}”` }),
      el('span', { className: 'muted', textContent: ` — asked ${q.times}×, last at ${clock(q.last_at)} ` }),
      draftButton(q.question)));
  }
}

async function refresh() {
  const query = account ? `?account=${encodeURIComponent(account)}` : '';
  const reply = await api(`/api/desk/calls${query}`);
  desk.calls = reply.calls;
  alertNewHandoffs(reply.calls);
  render(reply.calls, reply.now);
  if (account) {
    const records = await api(`/api/desk/messages${query}`);
    desk.records = records.records;
    renderRecords(records.records);
    if (polls++ % HISTORY_EVERY === 0) {
      await refreshHistory();
      const voice = await api(`/api/desk/voice-messages${query}`);
      renderVoiceMessages(voice.messages);
    }
  }
}

// The history's filters, as the server takes them: a day is the staff member's own day
// (midnight to midnight where the browser is), sent as unix seconds.
function historyQuery() {
  const query = new URLSearchParams({ account });
  const day = $('filter-day').value;
  if (day) {
    const start = new Date(`${day}T00:00:00`);
    const end = new Date(start);
    end.setDate(end.getDate() + 1);
    query.set('since', String(start.getTime() / 1000));
    query.set('until', String(end.getTime() / 1000));
  }
  if ($('filter-outcome').value) query.set('outcome', $('filter-outcome').value);
  if ($('filter-unanswered').checked) query.set('unanswered', '1');
  if ($('filter-words').value.trim()) query.set('q', $('filter-words').value.trim());
  return query.toString();
}

async function refreshHistory() {
  if (!account) return;
  const history = await api(`/api/desk/history?${historyQuery()}`);
  desk.history = history.calls;
  desk.unanswered = history.unanswered;
  renderHistory(history);
}

// A question the agent could not answer, drafted as an FAQ entry for the account's file:
// the staff member writes the answer and a second phrasing, and the owner adds it.
function faqDraft(question) {
  const id = question.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'new-faq';
  const quoted = JSON.stringify(question);
  return [
    `# Add under faqs: in config/accounts/${account}.yaml`,
    `  - id: ${id}`,
    '    questions:',
    `      - ${quoted}`,
    '      - "<another way a caller asks it>"',
    '    answer: "<what the agent should say>"',
  ].join('\n');
}

function draftButton(question) {
  const button = el('button', { type: 'button', className: 'draft-faq', textContent: 'Draft an FAQ' });
  button.onclick = () => {
    const box = el('textarea', { className: 'draft', readOnly: true, value: faqDraft(question) });
    button.replaceWith(box);
    box.select();
  };
  return button;
}

function showAccounts(accounts) {
  if (!accounts.includes(account)) account = accounts.length === 1 ? accounts[0] : '';
  const select = $('account');
  select.replaceChildren(el('option', { value: '', textContent: 'all of mine' }),
    ...accounts.map((id) => el('option', { value: id, textContent: id })));
  select.value = account;
  $('scope').textContent = account ? `· ${account}` : '';
}

async function open(me) {
  desk.who = me.name;
  desk.accounts = me.accounts;
  $('who').textContent = me.name;
  showAccounts(me.accounts);
  await refresh();
  desk.open = true;
  desk.error = '';
  $('login').hidden = true;
  $('desk').hidden = false;
  document.body.dataset.state = 'open';
  clearInterval(timer);
  timer = setInterval(() => refresh().catch((error) => { $('updated').textContent = `· ${error.message}`; }), POLL_MS);
}

// How loud the caller is on the staff member's side (for people: the call is live; for tests).
function watchLevel(mediaStreamTrack) {
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  context.createMediaStreamSource(new MediaStream([mediaStreamTrack])).connect(analyser);
  const samples = new Float32Array(512);
  setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    if (Math.sqrt(sum / samples.length) > Math.pow(10, -45 / 20)) desk.heard += 1;
  }, 100);
}

async function takeCall(roomName) {
  const ticket = await api('/api/desk/take', {
    method: 'POST',
    body: JSON.stringify({ room: roomName }),
  });
  await joinCall(ticket, 'talking with the caller');
}

// Dial a caller back (a number from this account's messages) and talk from this page: the
// server places the call through the SIP bridge and answers a ticket for its room.
async function callBack(number) {
  const ticket = await api('/api/desk/call-back', {
    method: 'POST',
    body: JSON.stringify({ account, number }),
  });
  await joinCall(ticket, `calling ${number}…`);
}

async function joinCall(ticket, talking) {
  const roomName = ticket.room;
  const room = new Room();
  desk.onCall = roomName;
  $('oncall').hidden = false;
  $('oncall-room').textContent = roomName;
  const setCallState = (state) => {
    desk.callState = state;
    $('oncall-state').textContent = state;
  };
  setCallState('connecting');
  room.on(RoomEvent.TrackSubscribed, (track, _publication, participant) => {
    if (track.kind !== Track.Kind.Audio) return;
    document.body.append(track.attach());
    if (!participant.isAgent) watchLevel(track.mediaStreamTrack);
  });
  room.on(RoomEvent.Disconnected, () => {
    setCallState('ended');
    desk.onCall = null;
    $('oncall').hidden = true;
  });
  $('hangup').onclick = () => room.disconnect();
  room.on(RoomEvent.ParticipantConnected, (participant) => {
    if (participant.identity.startsWith('callee-')) setCallState(`talking with ${participant.name}`);
  });
  await room.connect(ticket.url, ticket.token);
  await room.localParticipant.setMicrophoneEnabled(true);
  setCallState(talking);
}

function callBackButton(number) {
  const button = el('button', { type: 'button', className: 'callback', textContent: `Call back ${number}` });
  button.onclick = () => {
    button.disabled = true;
    callBack(number).catch((error) => {
      button.disabled = false;
      button.textContent = `Call back ${number} (failed: ${error.message})`;
    });
  };
  return button;
}

$('login').onsubmit = async (event) => {
  event.preventDefault();
  $('error').textContent = '';
  const { response, body } = await request('/api/desk/login', {
    method: 'POST',
    body: JSON.stringify({ name: $('name').value, password: $('password').value }),
  });
  $('password').value = '';
  if (!response.ok) {
    stop(body.error || response.statusText);
    return;
  }
  open(body).catch((error) => { $('error').textContent = error.message; });
};
$('notify').onclick = async () => {
  if (!window.Notification) return;
  const permission = await Notification.requestPermission();
  $('notify').textContent = permission === 'granted' ? 'Notifications on' : 'Notifications blocked';
};
$('logout').onclick = async () => {
  await request('/api/desk/logout', { method: 'POST', body: '{}' });
  stop('logged out');
};
$('history-filters').onsubmit = (event) => event.preventDefault();
$('history-filters').oninput = () => {
  refreshHistory().catch((error) => { $('error').textContent = error.message; });
};

$('account').onchange = () => {
  account = $('account').value;
  $('scope').textContent = account ? `· ${account}` : '';
  $('messages').replaceChildren(el('li', { className: 'muted', textContent: 'Pick one account to see its messages.' }));
  $('history').replaceChildren(el('li', { className: 'muted', textContent: 'Pick one account to see its calls.' }));
  $('unanswered').replaceChildren();
  $('voice-messages').replaceChildren(el('li', { className: 'muted', textContent: 'Pick one account to hear its voice messages.' }));
  desk.voiceMessages = [];
  desk.records = [];
  desk.history = [];
  desk.unanswered = [];
  polls = 0;
  refresh().catch(() => {});
};
// Still logged in from earlier (the cookie): straight to the calls.
request('/api/desk/me').then(({ response, body }) => {
  if (response.ok) open(body).catch(() => {});
});
