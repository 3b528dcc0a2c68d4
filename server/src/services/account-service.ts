import { createHash, randomUUID } from "node:crypto";
import type { RegisterRequest, RegisterResponse, ResetIdentityRequest, WhoAmIResponse } from "@zimchat/protocol";
import type { Bytes } from "../db/database.js";
import { deviceIdParamSchema, uuidSchema } from "@zimchat/protocol";
import type { RegistrationMode } from "../config.js";
import { HttpError } from "../errors.js";
import type { PluginHost } from "../plugins/plugin-host.js";
import { UsernameTakenError, type AccountStore, type SignedKey } from "../stores/account-store.js";
import type { InviteStore } from "../stores/invite-store.js";
import { dummyCredentials, hashPassword, verifyPassword } from "../util/password.js";
import type { RateLimiter } from "./rate-limiter.js";
import { checkKyberKey, checkSignature, fromBase64, parseEcKey } from "./signal-keys.js";

/** An authenticated device. */
export interface DevicePrincipal {
  accountId: string;
  deviceId: number;
}

/** Registration, authentication and username lookup. */
export class AccountService {
  constructor(
    private readonly accounts: AccountStore,
    private readonly invites: InviteStore,
    private readonly limiter: RateLimiter,
    private readonly registration: RegistrationMode,
    private readonly plugins: PluginHost,
  ) {}

  /**
   * Creates an account with device 1. Keys are checked before anything is
   * stored; then plugins may refuse (`beforeAccountRegistered`, 403
   * `refused_by_plugin`, or 503 `unavailable` when one fails); the invite is
   * consumed in the same transaction as the account. Plugins hear of the
   * account (`accountRegistered`) after the commit.
   */
  async register(request: RegisterRequest, clientAddress: string): Promise<RegisterResponse> {
    if (this.registration === "closed")
      throw new HttpError("registration_closed", "This server does not accept new accounts");
    if (this.registration === "invite" && !request.inviteToken) {
      throw new HttpError("invite_required", "This server needs an invite token to register");
    }
    await this.limiter.consume("register", clientAddress);

    const { identityKeyBytes, signed, kyber } = checkIdentity(request);
    if (this.plugins.has("beforeAccountRegistered"))
      await this.plugins.ask("beforeAccountRegistered", [{ username: request.username }]);

    const id = randomUUID();
    const { salt, hash } = hashPassword(request.password);
    const inviteToken = this.registration === "invite" ? request.inviteToken : undefined;
    try {
      await this.accounts.create(
        {
          id,
          username: request.username,
          identityKey: identityKeyBytes,
          device: {
            id: 1,
            registrationId: request.registrationId,
            passwordSalt: salt,
            passwordHash: hash,
            signedPreKey: signed,
            kyberLastResort: kyber,
          },
        },
        async (tx) => {
          if (inviteToken === undefined) return;
          const tokenHash = createHash("sha256").update(inviteToken).digest();
          if (!(await this.invites.consume(tx, tokenHash, new Date()))) {
            throw new HttpError("invalid_invite", "The invite token is unknown, expired, revoked or used up");
          }
        },
      );
    } catch (error) {
      if (error instanceof UsernameTakenError) throw new HttpError("username_taken", "That username is taken");
      throw error;
    }
    await this.plugins.emit("accountRegistered", {
      accountId: id,
      username: request.username,
      identityKey: Buffer.from(identityKeyBytes).toString("base64"),
      time: Date.now(),
    });
    return { uuid: id, deviceId: 1, username: request.username };
  }

  /**
   * Checks `uuid.deviceId` and password. Every failure is the same 401, and an
   * unknown device costs the same hash as a wrong password; the right
   * password of a disabled account is a 403.
   *
   * With `clientAddress`, failures are limited per address and per address
   * and device (`failedAuthPerAddress`, `failedAuthPerAddressAndDevice`):
   * only failures count, and only the address they came from is refused
   * (429 `too_many_failed_logins`, before any lookup), so nobody can lock
   * the owner out from another address (as Synapse's `rc_login`).
   * @throws HttpError `unauthorized`, `account_disabled` or `too_many_failed_logins`
   */
  async authenticate(username: string, password: string, clientAddress?: string): Promise<DevicePrincipal> {
    const keys =
      clientAddress === undefined
        ? null
        : { address: clientAddress, device: `${clientAddress} ${username.slice(0, 200)}` };
    if (keys) {
      await this.limiter.check("failedAuthPerAddress", keys.address, "too_many_failed_logins");
      await this.limiter.check("failedAuthPerAddressAndDevice", keys.device, "too_many_failed_logins");
    }
    const failed = async (): Promise<never> => {
      if (keys)
        await Promise.all([
          this.limiter.penalize("failedAuthPerAddress", keys.address),
          this.limiter.penalize("failedAuthPerAddressAndDevice", keys.device),
        ]);
      throw unauthorized();
    };
    const dot = username.lastIndexOf(".");
    const uuid = uuidSchema.safeParse(username.slice(0, dot));
    const deviceId = deviceIdParamSchema.safeParse(username.slice(dot + 1));
    if (dot < 0 || !uuid.success || !deviceId.success) return failed();
    const credentials = (await this.accounts.credentials(uuid.data, deviceId.data)) ?? dummyCredentials;
    // No lock-out of the device itself: passwords carry >= 128 random bits, and a
    // lock-out would let anyone deny service to a device by guessing wrong.
    if (!verifyPassword(password, credentials.passwordSalt, credentials.passwordHash)) return failed();
    // Said only to a caller who knows the password: the device is right, the account is off.
    if (credentials.disabled) throw new HttpError("account_disabled", "An admin disabled this account");
    await this.accounts.markSeen(uuid.data, deviceId.data);
    return { accountId: uuid.data, deviceId: deviceId.data };
  }

  /**
   * A reinstall from the primary device: new identity key, everything else
   * of the old one removed. Plugins hear of it (`identityKeyChanged`) after the commit.
   */
  async resetIdentity(principal: DevicePrincipal, request: ResetIdentityRequest): Promise<void> {
    if (principal.deviceId !== 1)
      throw new HttpError("forbidden", "Only the primary device can replace the identity key");
    const { identityKeyBytes, signed, kyber } = checkIdentity(request);
    const previous = await this.accounts.resetIdentity(principal.accountId, {
      identityKey: identityKeyBytes,
      registrationId: request.registrationId,
      signedPreKey: signed,
      kyberLastResort: kyber,
    });
    await this.plugins.emit("identityKeyChanged", {
      accountId: principal.accountId,
      identityKey: Buffer.from(identityKeyBytes).toString("base64"),
      previousIdentityKey: Buffer.from(previous).toString("base64"),
      time: Date.now(),
    });
  }

  async whoAmI(principal: DevicePrincipal): Promise<WhoAmIResponse> {
    const account = await this.accounts.find(principal.accountId);
    if (!account) throw unauthorized();
    return { uuid: principal.accountId, deviceId: principal.deviceId, username: account.username };
  }

  /** The account id of a username (rate limited per requesting account). */
  async lookupUsername(principal: DevicePrincipal, username: string): Promise<{ uuid: string }> {
    await this.limiter.consume("usernameLookup", principal.accountId);
    const uuid = await this.accounts.idForUsername(username);
    if (!uuid) throw new HttpError("not_found", "No account has that username");
    return { uuid };
  }
}

/**
 * Parses an identity key and checks the signed pre-key and Kyber last-resort
 * key against it. @throws HttpError `invalid_key` or `invalid_signature`
 */
function checkIdentity(request: Pick<RegisterRequest, "identityKey" | "signedPreKey" | "pqLastResortPreKey">): {
  identityKeyBytes: Bytes;
  signed: SignedKey;
  kyber: SignedKey;
} {
  const identityKeyBytes = fromBase64(request.identityKey);
  const identityKey = parseEcKey(identityKeyBytes, "identityKey");
  const signed = {
    keyId: request.signedPreKey.keyId,
    publicKey: fromBase64(request.signedPreKey.publicKey),
    signature: fromBase64(request.signedPreKey.signature),
  };
  const kyber = {
    keyId: request.pqLastResortPreKey.keyId,
    publicKey: fromBase64(request.pqLastResortPreKey.publicKey),
    signature: fromBase64(request.pqLastResortPreKey.signature),
  };
  parseEcKey(signed.publicKey, "signedPreKey.publicKey");
  checkKyberKey(kyber.publicKey, "pqLastResortPreKey.publicKey");
  checkSignature(identityKey, signed.publicKey, signed.signature, "signedPreKey");
  checkSignature(identityKey, kyber.publicKey, kyber.signature, "pqLastResortPreKey");
  return { identityKeyBytes, signed, kyber };
}

/** The one answer to every failed authentication, whatever was wrong. */
export function unauthorized(): HttpError {
  return new HttpError("unauthorized", "Authentication failed", {}, { "WWW-Authenticate": 'Basic realm="zimchat"' });
}
