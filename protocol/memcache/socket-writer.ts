/**
 * Sends replies straight to a socket's libuv handle, past the Writable stream. With one request in
 * flight per connection, every reply is one write, and the Writable machinery around it (its state,
 * a request object per write, a nextTick per turn) costs about 0.7 µs: near a tenth of a request's
 * CPU. Node has no public "write now if the kernel takes it", so this calls the handle method that
 * net.Socket itself calls, with a request object from the same binding. Where that is missing (a
 * Node without it), or the socket's own stream still holds bytes, writes take the public path.
 */
import type { Socket } from "node:net";

/** Node's write request: kept by the handle while the kernel has not taken all of a write. */
interface WriteRequest {
  oncomplete?: (status: number) => void;
  buffer?: Buffer;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

interface WritableHandle {
  /** 0, or a negative errno; `streamBaseState[kLastWriteWasAsync]` says whether it finished. */
  writeBuffer(req: WriteRequest, data: Buffer): number;
}

function streamWrap(): StreamWrapBinding | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding(
      "stream_wrap",
    );
    const { WriteWrap, streamBaseState, kLastWriteWasAsync } = binding;
    if (typeof WriteWrap !== "function" || !(streamBaseState instanceof Int32Array)) return undefined;
    if (typeof kLastWriteWasAsync !== "number") return undefined;
    return { WriteWrap, streamBaseState, kLastWriteWasAsync };
  } catch {
    return undefined;
  }
}

const binding = streamWrap();

/** Whether this Node lets writes go straight to the handle (else every write takes the stream). */
export const directWrites = binding !== undefined;

export class SocketWriter {
  /** Writes the kernel has not finished taking. */
  private pending = 0;
  /** Reused while writes finish at once (a finished write leaves its request untouched). */
  private req: WriteRequest | undefined = binding === undefined ? undefined : new binding.WriteWrap();

  /**
   * Whether the kernel took the last write at once, and so every write before it too: nothing
   * holds a view of their bytes any more, so that memory may be written again.
   */
  taken = false;

  /** `drained`: called when writes that waited for the kernel have all been taken. */
  constructor(
    private readonly socket: Socket,
    private readonly drained: () => void,
  ) {}

  /** Whether the socket holds bytes it has not sent: a writer should wait for `drained`. */
  get full(): boolean {
    return this.pending > 0 || this.socket.writableNeedDrain;
  }

  /** false: the bytes wait for the kernel (see `full`). */
  write(data: Buffer): boolean {
    const socket = this.socket;
    const handle = (socket as unknown as { _handle: WritableHandle | null })._handle;
    const req = this.req;
    this.taken = false;
    // The stream's own queue goes first: bytes written past it would overtake it. A socket still
    // connecting has nowhere to write yet: its stream holds the bytes until it connects.
    if (
      req === undefined ||
      handle === null ||
      socket.writableLength > 0 ||
      socket.destroyed ||
      socket.connecting
    )
      return socket.write(data);
    const err = handle.writeBuffer(req, data);
    if (err !== 0) {
      socket.destroy();
      return false;
    }
    const b = binding as StreamWrapBinding;
    if (b.streamBaseState[b.kLastWriteWasAsync] === 0) {
      // Done at once only when no write before it is still queued in the handle: those would be
      // ahead of it, and libuv then queues this one too.
      this.taken = true;
      return true;
    }
    // The handle now owns the request until the kernel takes the rest, and must keep the bytes.
    req.buffer = data;
    req.oncomplete = this.complete;
    this.req = new b.WriteWrap();
    this.pending++;
    return false;
  }

  private readonly complete = (status: number): void => {
    this.pending--;
    if (status < 0) this.socket.destroy();
    else if (this.pending === 0) this.drained();
  };
}
