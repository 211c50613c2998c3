/**
 * Keeps the MutatingWebhookConfiguration's `caBundle` equal to the CA that signs the serving certificate.
 *
 * The injector reads its own configuration (RBAC: get and patch on that one name only) and sends a JSON
 * Patch that replaces `clientConfig.caBundle` of each webhook whose bundle differs. Every replace is
 * preceded by a `test` of that webhook's name, so a configuration edited meanwhile (webhooks reordered)
 * makes the API server refuse the patch whole (422) instead of writing a bundle into the wrong entry;
 * the next sync reads it again. A periodic resync puts the bundle back if someone re-applies the manifest
 * with an empty one.
 */
import { PatchStrategy, setHeaderOptions, type AdmissionregistrationV1Api, type V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { describeError, TrellisError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { pointer, type JsonPatchOperation } from './json-patch.js';
import type { InjectorMetrics } from './metrics.js';
import { fieldManager } from '../common/kubernetes-client.js';
import { CODE } from '../common/error-codes.js';

export type WebhookConfigurationApi = Pick<AdmissionregistrationV1Api, 'readMutatingWebhookConfiguration' | 'patchMutatingWebhookConfiguration'>;

export interface CaBundleSyncOptions {
  readonly api: WebhookConfigurationApi;
  /** metadata.name of the MutatingWebhookConfiguration, e.g. trellis-injector. */
  readonly name: string;
  readonly logger: Logger;
  readonly metrics: InjectorMetrics;
  readonly resyncMs?: number;
  readonly retryMs?: number;
}

export type SyncResult = 'updated' | 'unchanged';

/** The JSON Patch that brings every webhook of `config` to `caBundleBase64`; empty when all agree. */
export function caBundlePatch(config: V1MutatingWebhookConfiguration, caBundleBase64: string): JsonPatchOperation[] {
  const ops: JsonPatchOperation[] = [];
  (config.webhooks ?? []).forEach((webhook, index) => {
    if (webhook.clientConfig.caBundle === caBundleBase64) return;
    ops.push({ op: 'test', path: pointer('webhooks', index, 'name'), value: webhook.name });
    ops.push({ op: 'add', path: pointer('webhooks', index, 'clientConfig', 'caBundle'), value: caBundleBase64 });
  });
  return ops;
}

export class WebhookCaBundleSync {
  private desired: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SyncResult | undefined> | undefined;
  private stopped = false;

  constructor(private readonly options: CaBundleSyncOptions) {}

  /** Makes the configuration trust `caBundlePem`; resolves with what was done, throws when the API refused. */
  async sync(caBundlePem: string): Promise<SyncResult> {
    const desired = Buffer.from(caBundlePem, 'utf8').toString('base64');
    this.desired = desired;
    const { api, name } = this.options;
    let config: V1MutatingWebhookConfiguration;
    try {
      config = await api.readMutatingWebhookConfiguration({ name });
    } catch (err) {
      this.options.metrics.caBundleSyncs.inc({ result: 'failed' });
      throw new TrellisError(CODE.INJECTOR_WEBHOOK_READ, `cannot read MutatingWebhookConfiguration "${name}": ${describeError(err)}`, { side: 'upstream', retryable: true, cause: err });
    }
    if ((config.webhooks ?? []).length === 0) {
      this.options.metrics.caBundleSyncs.inc({ result: 'failed' });
      throw new TrellisError(CODE.INJECTOR_WEBHOOK_EMPTY, `MutatingWebhookConfiguration "${name}" has no webhooks`, { side: 'upstream' });
    }
    const patch = caBundlePatch(config, desired);
    if (patch.length === 0) {
      this.options.metrics.caBundleSyncs.inc({ result: 'unchanged' });
      return 'unchanged';
    }
    try {
      await api.patchMutatingWebhookConfiguration({ name, body: patch, fieldManager: fieldManager('injector') }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch));
    } catch (err) {
      this.options.metrics.caBundleSyncs.inc({ result: 'failed' });
      throw new TrellisError(CODE.INJECTOR_WEBHOOK_PATCH, `cannot update the caBundle of MutatingWebhookConfiguration "${name}": ${describeError(err)}`, {
        side: 'upstream',
        retryable: true,
        cause: err,
      });
    }
    this.options.metrics.caBundleSyncs.inc({ result: 'updated' });
    this.options.logger.info({ webhookConfiguration: name, webhooks: patch.length / 2 }, 'webhook caBundle updated');
    return 'updated';
  }

  /** Starts periodic resyncs of the last desired bundle (and retries after failures). */
  start(): void {
    this.stopped = false;
    this.arm(this.options.resyncMs ?? 60_000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Syncs now, logging instead of throwing, and arms the next attempt (sooner after a failure). */
  async syncInBackground(caBundlePem: string): Promise<SyncResult | undefined> {
    if (this.running !== undefined) await this.running.catch(() => undefined);
    this.running = this.sync(caBundlePem).then(
      (result) => {
        this.arm(this.options.resyncMs ?? 60_000);
        return result;
      },
      (err: unknown) => {
        this.options.logger.warn({ err: describeError(err) }, 'webhook caBundle sync failed; will retry');
        this.arm(this.options.retryMs ?? 5_000);
        return undefined;
      },
    );
    return this.running;
  }

  private arm(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.desired !== undefined) void this.syncInBackground(Buffer.from(this.desired, 'base64').toString('utf8'));
      else this.arm(this.options.resyncMs ?? 60_000);
    }, delayMs);
    this.timer.unref();
  }
}
