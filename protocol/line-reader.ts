/** Cuts a byte stream into lines (LF, with an optional CR before it), as latin1 strings. */
export class LineReader {
  private rest = "";

  /** The lines `chunk` completes, in order; an unfinished line is kept for the next chunk. */
  push(chunk: Buffer): string[] {
    const text = this.rest === "" ? chunk.toString("latin1") : this.rest + chunk.toString("latin1");
    const lines: string[] = [];
    let at = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", at)) {
      lines.push(text.slice(at, nl > at && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl));
      at = nl + 1;
    }
    this.rest = at === 0 ? text : text.slice(at);
    return lines;
  }

  /** Characters of the unfinished line: a peer that never ends its line is cut off by this. */
  get pending(): number {
    return this.rest.length;
  }

  clear(): void {
    this.rest = "";
  }
}
