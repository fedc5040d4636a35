// The call page: ask the web app for a token (which pre-dispatches the agent), join the room
// with LiveKit's JavaScript client, publish the microphone, play the agent, show its text
// streams as a live transcript, and measure the time from joining to the first audible frame.
import { Room, RoomEvent, Track } from 'livekit-client';

const account = document.body.dataset.account;
// `?predispatch=0`: the agent is dispatched when the caller joins, not when the page opens
// (to compare the two; scripts/bench-web.sh).
const predispatch = new URLSearchParams(location.search).get('predispatch') !== '0';
const $ = (id) => document.getElementById(id);
// What the page knows, for people (the DOM) and for tests (window.firstword).
// `audio`: per participant, the times (performance.now()) of 100 ms samples above -45 dBFS, so a
// test can tell who was heard when (the agent before a handoff, the staff member after it).
// joinedAt / heardAt: performance.now() when connect() resolved / the first word was heard.
// ringing / rangAt / ringHeardAt / ringStoppedAt: the ringback (below) and its moments.
const call = { state: 'ready', ttfwMs: null, joinedAt: null, heardAt: null, room: null, transcript: [], audio: {}, agent: null, handoff: '', staff: null, ringing: false, rangAt: null, ringHeardAt: null, ringStoppedAt: null };
window.firstword = call;

function setState(state) {
  call.state = state;
  $('state').textContent = state;
  document.body.dataset.state = state;
}

// One line per transcript segment: a segment may come as several streams (interim, then final
// for the caller), each carrying the whole text so far, so a new stream replaces the line's text.
const lines = new Map();
function segmentLine(segment, isAgent) {
  let entry = lines.get(segment);
  if (!entry) {
    const li = document.createElement('li');
    li.className = isAgent ? 'agent' : 'caller';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = isAgent ? 'agent' : 'you';
    const text = document.createElement('span');
    li.append(who, text);
    $('transcript').append(li);
    entry = { agent: isAgent, text: '', node: text };
    lines.set(segment, entry);
    call.transcript.push(entry);
  }
  entry.text = '';
  return (chunk) => {
    entry.text += chunk;
    entry.node.textContent = entry.text;
  };
}

// The first frame above -45 dBFS on the agent's track, as the caller simulator measures it.
// The agent's track is published before the caller joins (the agent was dispatched when the
// token was made), so the track may be subscribed, and even heard, before `connect()`
// resolves: both moments are kept and the time is reported once both are known.
function watchFirstWord(mediaStreamTrack) {
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([mediaStreamTrack]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const threshold = Math.pow(10, -45 / 20);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    if (Math.sqrt(sum / samples.length) > threshold) {
      clearInterval(timer);
      call.heardAt = performance.now();
      reportFirstWord();
    }
  }, 5);
}

function reportFirstWord() {
  if (call.heardAt === null || call.joinedAt === null || call.ttfwMs !== null) return;
  call.ttfwMs = Math.round(call.heardAt - call.joinedAt);
  $('ttfw').textContent = `${call.ttfwMs} ms`;
}

// Ringback: a caller who has joined and hears no agent yet hears the line ring, as a phone
// caller hears it ring until LiveKit's SIP bridge answers (agent/sip/phone.py), instead of
// silence. The agent may still be on its way, or every worker may be full and the room waits
// to be dispatched again when a slot frees (agent/worker/unanswered.py). It starts 1 s after joining
// (an agent that greets at once is heard before it would ring) and stops the moment the
// agent's audio arrives. The two-tone ring (440 + 480 Hz, 2 s on, 4 s off) is made here with
// WebAudio: nothing to download, nothing published to the room.
const RING_AFTER_MS = 1000;
let ringTimer = null;
let ringContext = null;

function startRingback() {
  if (call.agent || ringContext) return;
  const context = (ringContext = new AudioContext());
  const gain = context.createGain();
  gain.gain.value = 0;
  for (const hz of [440, 480]) {
    const tone = context.createOscillator();
    tone.frequency.value = hz;
    tone.connect(gain);
    tone.start();
  }
  const start = context.currentTime + 0.05;
  for (let t = 0; t < 3600; t += 6) {
    gain.gain.setValueAtTime(0.08, start + t);
    gain.gain.setValueAtTime(0, start + t + 2);
  }
  gain.connect(context.destination);
  // What the caller hears of it, for tests: the first 100 ms above -45 dBFS.
  const analyser = context.createAnalyser();
  gain.connect(analyser);
  const samples = new Float32Array(512);
  const timer = setInterval(() => {
    if (context.state === 'closed') return clearInterval(timer);
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    if (Math.sqrt(sum / samples.length) > Math.pow(10, -45 / 20)) {
      call.ringHeardAt = performance.now();
      clearInterval(timer);
    }
  }, 100);
  call.ringing = true;
  call.rangAt = performance.now();
  if (call.state === 'connected') $('state').textContent = 'ringing…';
}

function stopRingback() {
  clearTimeout(ringTimer);
  ringTimer = null;
  if (!ringContext) return;
  ringContext.close();
  ringContext = null;
  call.ringing = false;
  call.ringStoppedAt = performance.now();
  if (call.state === 'connected') $('state').textContent = 'connected';
}

function watchLevel(mediaStreamTrack, identity) {
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  context.createMediaStreamSource(new MediaStream([mediaStreamTrack])).connect(analyser);
  const samples = new Float32Array(512);
  const loud = (call.audio[identity] = []);
  setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    if (Math.sqrt(sum / samples.length) > Math.pow(10, -45 / 20)) {
      loud.push(performance.now());
      if (loud.length > 3000) loud.shift();
    }
  }, 100);
}

// The handoff as the agent publishes it (its participant attributes), and the staff member
// who took the call (a participant whose identity starts `desk-`, see agent/call/handoff/core.py).
const HANDOFF_TEXT = {
  requested: 'connecting you with a person…',
  taken: 'connected with a person',
  not_taken: 'nobody was free: your question was noted',
  failed: 'nobody could be reached: your question was noted',
};
function showHandoff(attributes) {
  const state = attributes['firstword.handoff'];
  if (!state || state === call.handoff) return;
  call.handoff = state;
  if (!call.staff) $('state').textContent = HANDOFF_TEXT[state] || state;
}

// The token is asked for when the page opens: that dispatches the agent, which then joins
// and gets ready while the caller reaches for the button. A ticket older than the agent's wait
// for its caller (the room is gone) is replaced at the click.
async function fetchTicket() {
  const response = await fetch('/api/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ account, predispatch }),
  });
  const ticket = await response.json();
  if (!response.ok) throw new Error(ticket.error);
  ticket.fetchedAt = performance.now();
  return ticket;
}
let pending = fetchTicket();
pending.catch(() => {}); // reported at the click

async function start() {
  $('call').disabled = true;
  setState('connecting');
  let ticket;
  try {
    ticket = await pending;
    if (performance.now() - ticket.fetchedAt > (ticket.wait_s - 2) * 1000) ticket = await fetchTicket();
  } catch (error) {
    pending = fetchTicket();
    pending.catch(() => {});
    setState(`error: ${error.message}`);
    $('call').disabled = false;
    return;
  }
  const room = new Room();
  call.room = ticket.room;
  room.on(RoomEvent.TrackSubscribed, (track, _publication, participant) => {
    if (track.kind !== Track.Kind.Audio) return;
    document.body.append(track.attach());
    if (participant.isAgent) {
      call.agent = participant.identity;
      stopRingback();
      watchFirstWord(track.mediaStreamTrack);
    }
    watchLevel(track.mediaStreamTrack, participant.identity);
  });
  room.on(RoomEvent.ParticipantAttributesChanged, (_changed, participant) => {
    if (participant.isAgent) showHandoff(participant.attributes);
  });
  room.on(RoomEvent.ParticipantConnected, (participant) => {
    if (!participant.identity.startsWith('desk-')) return;
    call.staff = participant.identity;
    setState(`talking with ${participant.name || 'the front desk'}`);
  });
  room.registerTextStreamHandler('lk.transcription', async (reader, participant) => {
    const isAgent = participant.identity !== room.localParticipant.identity;
    const segment = reader.info.attributes?.['lk.segment_id'] ?? reader.info.id;
    const append = segmentLine(segment, isAgent);
    for await (const chunk of reader) append(chunk);
  });
  room.on(RoomEvent.Disconnected, () => {
    stopRingback();
    setState('ended');
    $('hangup').disabled = true;
  });
  $('hangup').onclick = () => room.disconnect();
  await room.connect(ticket.url, ticket.token);
  call.joinedAt = performance.now();
  reportFirstWord();
  setState('connected');
  if (!call.agent) ringTimer = setTimeout(startRingback, RING_AFTER_MS);
  $('hangup').disabled = false;
  await room.localParticipant.setMicrophoneEnabled(true);
}

$('call').onclick = () => start().catch((error) => setState(`error: ${error.message}`));
