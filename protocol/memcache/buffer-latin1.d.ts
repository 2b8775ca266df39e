// Node's undocumented latin1 fast paths behind `toString("latin1")` / `write(s, off, "latin1")`,
// without the argument juggling. Keys are latin1 strings (one char per byte), so these are exact.
interface Buffer {
  latin1Slice(start: number, end: number): string;
  latin1Write(text: string, offset: number): number;
}
