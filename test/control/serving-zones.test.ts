import { describe, expect, it } from 'vitest';
import { servingZones } from '../../control/zone-sync/serving-zones.js';

describe('which zone would serve a call (explain --from-zone)', () => {
  it('keeps the caller in its own zone while half its endpoints there are healthy', () => {
    const plan = servingZones('east', [
      { zone: 'east', healthy: 1, total: 2 },
      { zone: 'west', healthy: 3, total: 3 },
    ]);
    expect(plan.servedBy).toBe('east');
    expect(plan.order.map((z) => z.zone)).toEqual(['east', 'west']);
  });

  it('fails over to the other zones, most healthy first, when its own zone degrades or is empty', () => {
    const degraded = servingZones('east', [
      { zone: 'east', healthy: 1, total: 4 },
      { zone: 'west', healthy: 1, total: 1 },
      { zone: 'north', healthy: 2, total: 2 },
      { zone: 'south', healthy: 0, total: 2 },
    ]);
    expect(degraded.order.map((z) => z.zone)).toEqual(['north', 'west', 'east', 'south']);
    expect(degraded.servedBy).toBe('north');
    expect(degraded.order[2]?.why).toMatch(/only 1 of 4/);
    const absent = servingZones('east', [{ zone: 'west', healthy: 1, total: 1 }]);
    expect(absent.servedBy).toBe('west');
  });

  it('says no zone serves the call when none has a healthy endpoint, and merges counts of one zone', () => {
    expect(servingZones('east', [{ zone: 'east', healthy: 0, total: 1 }]).servedBy).toBeNull();
    expect(servingZones('east', []).servedBy).toBeNull();
    const merged = servingZones('east', [
      { zone: 'east', healthy: 0, total: 1 },
      { zone: 'east', healthy: 1, total: 1 },
    ]);
    expect(merged.order).toEqual([expect.objectContaining({ zone: 'east', healthy: 1, total: 2 })]);
  });
});
