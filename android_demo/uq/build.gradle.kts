// The uncertainty library: plain Java 8, no Android and no JSON dependency (its own strict parser),
// so the same jar runs in the app and in desktop JUnit tests.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    // the golden vectors shared with the numpy reference, the TF head and the C library
    systemProperty("tflbayes.golden", rootDir.resolve("../tests/golden/uncertainty_golden.json").absolutePath)
    systemProperty("tflbayes.fixtures", projectDir.resolve("src/test/resources/bundles").absolutePath)
}
