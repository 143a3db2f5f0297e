/**
 * A Server-Sent Events parser over a web `ReadableStream` (the WHATWG event-stream format:
 * `id:`, `event:`, `data:` fields, comment lines starting with `:`, events ended by a blank
 * line; LF, CR or CRLF line ends).
 */

export interface SSEvent {
  /** The `id` field of this event, if it had one. */
  id: string | undefined;
  /** The event type; `message` when none was given. */
  event: string;
  /** The data lines joined with `\n`. */
  data: string;
}

/** Incremental parser: feed it text, take complete events. */
export class SSEParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private id: string | undefined;
  private sawField = false;

  /** Feeds a chunk of decoded text; returns the events it completed. */
  push(text: string): SSEvent[] {
    this.buffer += text;
    const out: SSEvent[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (m === null) break;
      // A lone CR at the very end may be the first half of CRLF: wait for more.
      if (m[0] === "\r" && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const ev = this.line(line);
      if (ev !== undefined) out.push(ev);
    }
    return out;
  }

  private line(line: string): SSEvent | undefined {
    if (line === "") {
      if (!this.sawField) return undefined;
      const ev: SSEvent = { id: this.id, event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      this.id = undefined;
      this.sawField = false;
      return ev;
    }
    if (line.startsWith(":")) return undefined; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        this.sawField = true;
        break;
      case "event":
        this.event = value;
        this.sawField = true;
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        this.sawField = true;
        break;
      default:
        break; // `retry` and unknown fields are ignored
    }
    return undefined;
  }
}

/**
 * The events of a byte stream. `read` is the reader's read (wrapped by the caller when it
 * wants an idle timeout). An event cut off by the end of the stream is dropped, as a browser
 * drops it.
 */
export async function* readEvents(
  read: () => Promise<ReadableStreamReadResult<Uint8Array>>,
): AsyncGenerator<SSEvent> {
  const decoder = new TextDecoder();
  const parser = new SSEParser();
  for (;;) {
    const { done, value } = await read();
    if (done) {
      for (const ev of parser.push(decoder.decode())) yield ev;
      return;
    }
    for (const ev of parser.push(decoder.decode(value, { stream: true }))) yield ev;
  }
}
