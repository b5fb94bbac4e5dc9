// Server-Sent Events over fetch(). EventSource cannot send an Authorization
// header, so the page reads the stream itself and parses the frames here
// (the text/event-stream format of the HTML standard: field lines, a blank
// line ends an event, ':' starts a comment). Reading with fetch also lets a
// reconnect send Last-Event-ID, so the daemon replays what the page missed.

// Incremental parser: feed() it text chunks as they arrive, in any split;
// it calls onEvent({event, data, id}) for every complete event.
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.lastId = '';
    this.reset();
  }

  reset() {
    this.event = '';
    this.data = [];
    this.hasData = false;
  }

  feed(text) {
    this.buf += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) break;
      // A lone '\r' at the very end may be the first half of "\r\n".
      if (m[0] === '\r' && m.index === this.buf.length - 1) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  // The stream ended: a held-back '\r' was a line end after all. An event
  // without its closing blank line is dropped, as the standard says.
  end() {
    if (this.buf.endsWith('\r')) {
      this.buf = this.buf.slice(0, -1);
      this.line(this.buf);
      this.buf = '';
    }
  }

  line(line) {
    if (line === '') {
      if (this.hasData) {
        this.onEvent({ event: this.event || 'message', data: this.data.join('\n'), id: this.lastId });
      }
      this.reset();
      return;
    }
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
    }
    switch (field) {
      case 'event': this.event = value; break;
      case 'data': this.data.push(value); this.hasData = true; break;
      case 'id': if (!value.includes('\0')) this.lastId = value; break;
      default: break; // 'retry' and unknown fields are ignored
    }
  }
}

// The terminal line of a job stream (docs/api.md), or null.
export function terminalOf(data) {
  if (data === '[DONE]') return { state: 'done', error: '' };
  if (data === '[CANCELLED]') return { state: 'cancelled', error: '' };
  // "interrupted: …" is a daemon stop: the job is not over, it resumes when the daemon is back.
  const interrupted = /^\[ERROR\] interrupted: /.exec(data);
  if (interrupted) return { state: 'interrupted', error: data.slice(interrupted[0].length).trim() };
  if (data.startsWith('[ERROR]')) return { state: 'failed', error: data.slice(7).trim() || 'failed' };
  return null;
}

const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];

// Watches one job stream until its terminal line, reconnecting with
// Last-Event-ID when the connection drops. handlers: onProgress(obj),
// onNarration(text), onData(text), onEnd({state, error}). open(headers)
// does the fetch (it adds the token). Returns {abort()}.
export function watchStream(open, handlers) {
  const ctl = { aborted: false, controller: null };
  let lastId = '';
  let ended = false;

  const end = (t) => {
    if (ended) return;
    ended = true;
    handlers.onEnd(t);
  };

  const dispatch = (ev) => {
    if (ev.id) lastId = ev.id;
    if (ev.event === 'progress') {
      try { handlers.onProgress(JSON.parse(ev.data)); } catch { /* a malformed frame is skipped */ }
    } else if (ev.event === 'data') {
      handlers.onData?.(ev.data);
    } else if (ev.event === 'message') {
      const t = terminalOf(ev.data);
      if (t) end(t);
      else handlers.onNarration?.(ev.data);
    }
  };

  (async () => {
    let attempt = 0;
    while (!ctl.aborted && !ended) {
      ctl.controller = new AbortController();
      let res;
      try {
        const headers = { Accept: 'text/event-stream' };
        if (lastId) headers['Last-Event-ID'] = lastId;
        res = await open(headers, ctl.controller.signal);
      } catch (e) {
        res = null;
      }
      if (ctl.aborted) return;
      if (res && res.status === 404) {
        end({ state: 'unknown', error: 'the daemon does not know this job' });
        return;
      }
      if (res && res.ok && res.body) {
        attempt = 0;
        const parser = new SseParser(dispatch);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) { parser.end(); break; }
            parser.feed(value);
            if (ended) { ctl.controller.abort(); return; }
          }
        } catch { /* dropped connection: reconnect below */ }
      } else if (res && res.status === 401) {
        handlers.onAuth?.();
      }
      if (ctl.aborted || ended) return;
      if (attempt >= RETRY_DELAYS_MS.length) {
        end({ state: 'lost', error: 'lost the connection to the job stream' });
        return;
      }
      await new Promise((r) => setTimeout(r, RETRY_DELAYS_MS[attempt++]));
    }
  })();

  return {
    abort() {
      ctl.aborted = true;
      ctl.controller?.abort();
    },
  };
}
