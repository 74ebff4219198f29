//! Authenticated encryption: installing a keyring, the mode, and rotation.

use crate::chitchat::Chitchat;
use crate::config::ConfigError;
use crate::crypto::EncryptionMode;
use crate::keyring::{KeyId, Keyring, KeyringError, SecretKey};

impl Chitchat {
    /// Installs a keyring and an encryption mode, replacing any previous ones.
    ///
    /// `nonce_salt` must be fresh for this incarnation of the node: 16 bytes from
    /// the operating system's random source (the runtime adapters do this). The
    /// node's generation and identity are mixed in, and the nonce counter is
    /// never reset, so nonces never repeat under a key.
    ///
    /// Fails, and changes nothing, if the largest key-value section would no
    /// longer fit half a datagram once the sealed envelope's 44 bytes are
    /// reserved ([`ConfigError::DatagramTooSmallForOneKey`]).
    pub fn set_encryption(
        &mut self,
        mode: EncryptionMode,
        keyring: Keyring,
        nonce_salt: [u8; 16],
    ) -> Result<(), ConfigError> {
        self.config().validate_sealed()?;
        let id = self.cluster.self_entry().state.id();
        let (generation, fingerprint) = (id.generation(), id.fingerprint().0);
        let max_senders = self.config().max_nodes.saturating_mul(2);
        self.encryption.install(mode, keyring, nonce_salt, generation, fingerprint, max_senders);
        Ok(())
    }

    /// Changes what the node sends and accepts. Fails (and changes nothing) if
    /// the mode seals and no keyring is installed.
    pub fn set_encryption_mode(&mut self, mode: EncryptionMode) -> Result<(), KeyringError> {
        self.encryption.set_mode(mode)
    }

    /// The encryption mode in force.
    pub fn encryption_mode(&self) -> EncryptionMode {
        self.encryption.mode()
    }

    /// The installed keyring, if any.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.encryption.keyring()
    }

    /// Rotation, step 1: adds a key that opens datagrams (a key already held is
    /// accepted again). On `Err` nothing changed.
    pub fn add_key(&mut self, key: SecretKey) -> Result<KeyId, KeyringError> {
        self.encryption.keyring_mut()?.add(key)
    }

    /// Rotation, step 2: makes a held key the one that seals. On `Err` nothing
    /// changed.
    pub fn set_primary_key(&mut self, id: KeyId) -> Result<(), KeyringError> {
        self.encryption.keyring_mut()?.set_primary(id)
    }

    /// Rotation, step 3: removes a key that is not the primary. On `Err` nothing
    /// changed.
    pub fn remove_key(&mut self, id: KeyId) -> Result<(), KeyringError> {
        self.encryption.keyring_mut()?.remove(id)
    }
}
