import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * The TLS identity both interop peers (MetroXdrClient, MetroXdrEndpoint) use:
 * their own key and certificate from a PKCS#12 key store whose password is
 * the first line of a file, and the CA certificates of a PEM bundle as the
 * only trust anchors for the other side.
 */
final class PeerTls {

    private PeerTls() {
    }

    /** The first line of a password file (the file a PKCS#12 identity's password is kept in). */
    static char[] readPassword(Path file) throws IOException {
        String text = Files.readString(file);
        int end = text.indexOf('\n');
        return (end < 0 ? text : text.substring(0, end)).strip().toCharArray();
    }

    /** Mutual-TLS context: own key from PKCS#12, trust anchors from a PEM bundle. */
    static SSLContext context(Path keystore, Path passwordFile, Path caPem)
            throws IOException, GeneralSecurityException {
        char[] password = readPassword(passwordFile);
        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(keystore)) {
            keys.load(in, password);
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, password);

        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        int i = 0;
        for (Certificate cert : CertificateFactory.getInstance("X.509")
                .generateCertificates(new ByteArrayInputStream(Files.readAllBytes(caPem)))) {
            trust.setCertificateEntry("ca" + (i++), cert);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);

        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return ctx;
    }
}
