import { describe, expect, it } from 'vitest';
import { addCopyCounts } from '../sinks/timescale-copy.js';
import { createMetrics } from './metrics.js';

const value = (text: string, series: string) =>
  Number(
    text
      .split('\n')
      .find((l) => l.startsWith(`${series} `))
      ?.split(' ')[1],
  );

describe('the COPY path metrics', () => {
  it("follow the sink's committed counts from the metrics' creation on, fallbacks by reason", async () => {
    addCopyCounts({ copied: 7, conflicts: 1, tombstones: 0 }); // before: not this registry's
    const m = createMetrics({ version: 'test', defaultMetrics: false });
    let text = await m.registry.metrics();
    expect(value(text, 'slotline_sink_copy_rows_total')).toBe(0);
    expect(value(text, 'slotline_sink_copy_fallbacks_total{reason="conflict"}')).toBe(0);
    expect(value(text, 'slotline_sink_copy_fallbacks_total{reason="tombstone"}')).toBe(0);
    addCopyCounts({ copied: 2500, conflicts: 1, tombstones: 0 });
    addCopyCounts({ copied: 40, conflicts: 0, tombstones: 2 });
    text = await m.registry.metrics();
    expect(value(text, 'slotline_sink_copy_rows_total')).toBe(2540);
    expect(value(text, 'slotline_sink_copy_fallbacks_total{reason="conflict"}')).toBe(1);
    expect(value(text, 'slotline_sink_copy_fallbacks_total{reason="tombstone"}')).toBe(2);
    // A scrape with nothing new changes nothing.
    expect(value(await m.registry.metrics(), 'slotline_sink_copy_rows_total')).toBe(2540);
  });
});
