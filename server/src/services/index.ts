import { FederationService } from "../federation/federation-service.js";
import type { ServerConfig } from "../config.js";
import type { Database } from "../db/database.js";
import { AccountStore } from "../stores/account-store.js";
import type { Metrics } from "../metrics/metrics.js";
import { PluginHost } from "../plugins/plugin-host.js";
import { AttachmentStore } from "../stores/attachment-store.js";
import { DeviceStore } from "../stores/device-store.js";
import { EnvelopeStore } from "../stores/envelope-store.js";
import { IdempotencyStore } from "../stores/idempotency-store.js";
import { InviteStore } from "../stores/invite-store.js";
import { KeyStore } from "../stores/key-store.js";
import { OutboxStore } from "../stores/outbox-store.js";
import { AdminStore } from "../stores/admin-store.js";
import { AccountService } from "./account-service.js";
import { AdminService } from "./admin-service.js";
import { AttachmentService } from "./attachment-service.js";
import { CertificateService } from "./certificate-service.js";
import { DeviceService } from "./device-service.js";
import { InviteService } from "./invite-service.js";
import { KeyService } from "./key-service.js";
import { MailboxService } from "./mailbox-service.js";
import { RateLimiter, type RateLimitStore } from "./rate-limiter.js";
import { SealedSenderService } from "./sealed-sender-service.js";

/** Every service of the homeserver, wired to its stores. */
export interface Services {
  accounts: AccountService;
  keys: KeyService;
  mailbox: MailboxService;
  invites: InviteService;
  attachments: AttachmentService;
  /** Sealed-sender certificates (key files load on `open()`, which the app calls at start-up). */
  certificates: CertificateService;
  sealed: SealedSenderService;
  devices: DeviceService;
  /** The admin API's operations (served only with an admin token). */
  admin: AdminService;
  /** Federation: this server's signed document, its peers, signed requests (keys load on first use). */
  federation: FederationService;
}

/** What the services use besides the config and the database. */
export interface ServiceDeps {
  /** Their hooks are called (none by default). */
  plugins?: PluginHost;
  /** Rate limits live here (Redis) when several nodes share them; in memory otherwise. */
  rateLimitStore?: RateLimitStore;
  /** Counters for `/metrics`. */
  metrics?: Metrics;
}

/** Builds the services over an open database. */
export function createServices(config: ServerConfig, database: Database, deps: ServiceDeps = {}): Services {
  const { plugins = PluginHost.empty(), rateLimitStore, metrics } = deps;
  const { prisma } = database;
  const accountStore = new AccountStore(prisma);
  const inviteStore = new InviteStore(prisma);
  const limiter = new RateLimiter(config.rateLimits, {
    store: rateLimitStore,
    onRefused: metrics && ((name) => metrics.rateLimitRefusals.inc({ limit: name })),
  });
  const mailbox = new MailboxService(
    new EnvelopeStore(prisma, database.sql),
    accountStore,
    limiter,
    config.envelopeTtlMs,
    plugins,
    metrics,
    {
      maxEnvelopes: config.mailboxMaxEnvelopes,
      maxBytes: config.mailboxMaxBytes,
    },
    new IdempotencyStore(prisma, database.sql),
  );
  const invites = new InviteService(inviteStore);
  const attachments = new AttachmentService(new AttachmentStore(prisma, database.provider), {
    dir: config.attachmentsDir,
    maxBytes: config.attachmentMaxBytes,
    quotaBytes: config.attachmentQuotaBytes,
    ttlMs: config.attachmentTtlMs,
    maxConcurrentUploads: config.attachmentMaxConcurrentUploads,
    maxCount: config.attachmentMaxCount,
    idleMs: config.attachmentUploadIdleMs,
    minBytesPerSecond: config.attachmentMinUploadBytesPerSecond,
    ...(metrics && { refusals: metrics }),
  });
  const certificates = new CertificateService(config.dataDir, accountStore, config.senderCertificateTtlMs);
  const devices = new DeviceService(new DeviceStore(prisma, database.provider), limiter, config, plugins);
  const sealed = new SealedSenderService(accountStore, mailbox, limiter);
  return {
    accounts: new AccountService(accountStore, inviteStore, limiter, config.registration, plugins),
    keys: new KeyService(new KeyStore(prisma, database.provider), accountStore, limiter, plugins),
    mailbox,
    invites,
    attachments,
    certificates,
    sealed,
    devices,
    admin: new AdminService(new AdminStore(prisma), invites, devices, attachments, certificates, mailbox),
    federation: new FederationService(
      config,
      accountStore,
      limiter,
      () => certificates.trustRoot().publicKey,
      mailbox,
      sealed,
      new OutboxStore(prisma),
      metrics,
    ),
  };
}
