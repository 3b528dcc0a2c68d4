/** libsignal's protocol stores over a device store: they live in the Signal backend (`../signal/`). */
export { signalStores, type IdentityChangeListener, type SignalStores } from "../signal/stores.js";
