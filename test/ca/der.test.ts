import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeOid, decodeSmallInteger, decodeTime, oid, readNode, readWhole, smallInteger, time, sequence, children, TAG } from '../../ca/der.js';

describe('DER encoding and reading', () => {
  it('round-trips OIDs (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 39 }), fc.array(fc.integer({ min: 0, max: 2 ** 31 - 1 }), { maxLength: 8 }), (a, b, rest) => {
        const dotted = [a, b, ...rest].join('.');
        expect(decodeOid(readWhole(oid(dotted), 'oid'))).toBe(dotted);
      }),
    );
    expect(oid('1.2.840.10045.4.3.2').toString('hex')).toBe('06082a8648ce3d040302');
  });

  it('round-trips times to the second, UTCTime before 2050 and GeneralizedTime after (RFC 5280 4.1.2.5)', () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1950, 0, 1), max: Date.UTC(9999, 11, 31) }), (ms) => {
        const date = new Date(Math.floor(ms / 1000) * 1000);
        const node = readWhole(time(date), 'time');
        expect(node.tag).toBe(date.getUTCFullYear() < 2050 ? TAG.UTC_TIME : TAG.GENERALIZED_TIME);
        expect(decodeTime(node).getTime()).toBe(date.getTime());
      }),
    );
  });

  it('round-trips small integers with minimal encoding', () => {
    for (const n of [0, 1, 127, 128, 255, 256, 65_535, 2 ** 31 - 1]) expect(decodeSmallInteger(readWhole(smallInteger(n), 'int'))).toBe(n);
    expect(smallInteger(128).toString('hex')).toBe('02020080');
  });

  it('reads long-form lengths and refuses truncated or overlong input', () => {
    const big = sequence(Buffer.alloc(300, 1));
    expect(readWhole(big, 'seq').content.length).toBe(300);
    expect(() => readNode(big.subarray(0, 100))).toThrow(/runs past the end/);
    expect(() => readWhole(Buffer.concat([big, Buffer.from([0])]), 'seq')).toThrow(/trailing bytes/);
    expect(() => readNode(Buffer.from([0x30]))).toThrow(/truncated/);
    expect(() => readNode(Buffer.from([0x30, 0x85, 1, 1, 1, 1, 1]))).toThrow(/unsupported length/);
    expect(() => children(readWhole(Buffer.from([0x30, 0x02, 0x04, 0x05]), 'seq'))).toThrow(/runs past the end/);
  });

  it('never throws anything but a coded error on random bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          const node = readWhole(Buffer.from(bytes), 'x');
          if (node.tag & 0x20) children(node);
        } catch (err) {
          expect((err as { code?: string }).code).toBe('TRELLIS_DER_MALFORMED');
        }
      }),
    );
  });
});
